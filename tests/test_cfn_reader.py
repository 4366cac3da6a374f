"""The one CloudFormation reader (lakehub.cfn.template.load/loads, on cfn-lint's decoder)."""

from __future__ import annotations

import pytest
import yaml

from lakehub.cfn.template import TemplateError, load, loads
from lakehub.errors import LakehubError

SHORT = """
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  Both: !And [!Condition IsProd, !Not [!Equals [!Ref Env, dev]]]
Resources:
  B:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub '${AWS::StackName}-b'
      Tags:
        - {Key: arn, Value: !GetAtt Role.Arn}
        - {Key: joined, Value: !Join ['-', [!Select [0, !Split [',', a,b]], !If [IsProd, x, !Ref 'AWS::NoValue']]]}
"""


def test_short_forms_become_the_long_forms_as_plain_data():
    t = loads(SHORT)
    assert t["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Env"}, "prod"]}
    assert t["Conditions"]["Both"]["Fn::And"][0] == {"Condition": "IsProd"}
    props = t["Resources"]["B"]["Properties"]
    assert props["BucketName"] == {"Fn::Sub": "${AWS::StackName}-b"}
    assert props["Tags"][0]["Value"] == {"Fn::GetAtt": ["Role", "Arn"]}
    assert props["Tags"][1]["Value"]["Fn::Join"][1][1] == {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]}
    assert type(t) is dict and type(props["Tags"]) is list and type(props["Tags"][0]["Key"]) is str
    assert yaml.safe_load(yaml.safe_dump(t)) == t  # plain types: a caller may dump what it read


def test_a_generated_template_by_its_name():
    t = load("tier.template.yaml")
    assert t["Resources"] and all(isinstance(k, str) for k in t["Parameters"])


@pytest.mark.parametrize(
    "text, says",
    [
        ("Resources:\n  A: [unclosed\n", "at line 3, column 1"),
        ("Resources:\n\tA: {}\n", "at line 2"),
        ("- just\n- a list\n", "its top level is a list, not a mapping"),
        ("Resources:\n  A: 1\n  A: 2\n", "Duplicate"),
    ],
)
def test_a_bad_template_is_one_error_naming_the_file_and_the_place(tmp_path, text, says):
    path = tmp_path / "bad.template.yaml"
    path.write_text(text)
    with pytest.raises(TemplateError) as err:
        load(path)
    message = str(err.value)
    assert isinstance(err.value, LakehubError) and "\n" not in message
    assert message.startswith(f"{path} is not a CloudFormation template: ") and says in message, message


def test_text_that_is_not_utf8_is_a_template_error(tmp_path):
    path = tmp_path / "bin.template.yaml"
    path.write_bytes(b"Resources: \xff\xfe\n")
    with pytest.raises(TemplateError, match="not UTF-8"):
        load(path)
