"""Checks over the generated templates and the hub image: the project's rules and the AWS-behaviour rules."""
