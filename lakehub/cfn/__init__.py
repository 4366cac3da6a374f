"""Reading CloudFormation: the generated templates loaded and their intrinsic functions resolved."""
