"""serve as a serverless endpoint's model runs it (infra/components/endpoint_modes.py): SageMaker captures nothing
there, so the container uploads its own capture to S3 in SageMaker's layout, where the drift job reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from mlops.local import aws as local_aws
from model_code import drift as dr
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.conftest import raw_strings
from tests.model_code.test_serve import FEATURES, start_server


def test_a_serverless_container_delivers_its_capture_to_s3_where_drift_reads_it(model_dir: Path,
                                                                                 tmp_path: Path) -> None:
    server = local_aws.start(tmp_path / "aws", account_id="111111111111", region="eu-west-1")
    try:
        with local_aws.environment(server):
            s3 = boto3.client("s3", region_name="eu-west-1")
            s3.create_bucket(Bucket="capture", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        frame = raw_strings(synthesize(40, seed=8)[FEATURES])
        srv = start_server(model_dir, tmp_path, MLOPS_CAPTURE_DIR=str(tmp_path / "capture"),
                           MLOPS_CAPTURE_S3_URI="s3://capture/datacapture", MLOPS_CAPTURE_ENDPOINT_NAME="ep",
                           MLOPS_CAPTURE_VARIANT_NAME="primary", **server.environment())
        for at in range(0, 40, 10):
            assert srv.invoke(frame.iloc[at:at + 10].to_csv(index=False, header=False))[0] == 200
        assert srv.stop() == 0  # the final flush uploaded everything: no capture lost
        assert not list((tmp_path / "capture").rglob("*.jsonl*"))
        with local_aws.environment(server):
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="capture")["Contents"]]
            assert keys and all(k.startswith("datacapture/ep/primary/") for k in keys), keys
            now = datetime.now(UTC)
            window = dr.Window(now - timedelta(hours=2), now + timedelta(hours=1))
            captured = dr.read_capture("s3://capture/datacapture/ep", ADULT, window)
        assert (captured.rows, captured.records, captured.predictions) == (40, 4, 40)
    finally:
        local_aws.stop(tmp_path / "aws")
