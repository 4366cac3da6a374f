"""The local environment: the whole platform on one machine on the AWS emulator."""
