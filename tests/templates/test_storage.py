"""Attribution: the optional trail of S3 data events (storage.template.yaml, RecordDataEvents)."""

from __future__ import annotations

from lakehub.cfn.template import Resolver


def storage(templates, **params):
    return Resolver(templates["storage.template.yaml"], {"AssetsBucketName": "assets", "PlatformName": "lakehub", **params}).resources()


def test_data_events_trail_records_object_calls_on_both_buckets_only_when_asked(templates):
    assert "DataEventsTrail" not in storage(templates) and "TrailBucket" not in storage(templates)
    main = templates["main.template.yaml"]
    assert main["Parameters"]["RecordDataEvents"]["Default"] == "false"
    res = storage(templates, RecordDataEvents="true", DataLakeBucketName="corp-lake")
    trail = res["DataEventsTrail"]["Properties"]
    assert trail["IsLogging"] is True or trail["IsLogging"] == "true"
    assert trail["S3BucketName"] == "<TrailBucket>"
    [selector] = trail["AdvancedEventSelectors"]
    fields = {f["Field"]: f for f in selector["FieldSelectors"]}
    assert fields["eventCategory"]["Equals"] == ["Data"]
    assert fields["resources.type"]["Equals"] == ["AWS::S3::Object"]
    assert sorted(fields["resources.ARN"]["StartsWith"]) == ["arn:aws:s3:::<NotebookBucket>/", "arn:aws:s3:::corp-lake/"]
    # the trail's bucket is protected like the others, and CloudTrail may write there for this trail only
    bucket = res["TrailBucket"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["Properties"]["VersioningConfiguration"]["Status"] == "Enabled"
    statements = {s.get("Sid"): s for s in res["TrailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]}
    assert "DenyInsecureTransport" in statements
    write = statements["CloudTrailWrites"]
    assert write["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert write["Resource"] == ["arn:aws:s3:::<TrailBucket>/AWSLogs/123456789012/*"]
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == "arn:aws:cloudtrail:us-east-1:123456789012:trail/lakehub-data-events"
    assert trail["TrailName"] == "lakehub-data-events"
