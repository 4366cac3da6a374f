"""lakehub: a multi-tenant JupyterHub data-science platform on AWS over an S3 data lake.

The package generates CloudFormation templates (troposphere), packages the crhelper custom
resources, publishes and deploys them, estimates cost, and runs the whole platform locally on
an embedded AWS emulator (moto).
"""

__version__ = "0.1.0"
