"""What talks to an AWS account: build and package, publish, deploy, upgrade products, restore homes."""
