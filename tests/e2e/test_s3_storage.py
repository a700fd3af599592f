"""A dataset whose `storage` is an S3 bucket (moto_server on loopback): its chunks land in the bucket."""

from __future__ import annotations

import hashlib
import json

import boto3

from .helpers import Env, write_tree

FILES = {f"part{i}/f{j}.bin": hashlib.sha256(f"{i}-{j}".encode()).digest() * 200 for i in range(3) for j in range(20)}


def test_apply_uploads_to_s3_storage(env: Env, moto_endpoint: str, tmp_path):
    hostport = moto_endpoint.removeprefix("http://")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket="datasets")
    config = tmp_path / "clearml.conf"
    config.write_text(json.dumps({"sdk": {"aws": {"s3": {"credentials": [{
        "host": hostport, "bucket": "datasets", "key": "testing", "secret": "testing", "secure": False,
        "multipart": False, "region": "us-east-1"}]}}}}))
    write_tree(env.work / "data", FILES)
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(f"""\
apiVersion: reconciler/v1
kind: Dataset
project: {env.project}
name: on-s3
storage: s3://{hostport}/datasets/store
versions:
  - version: 1.0.0
    sources:
      - path: ../data
""")
    vars_ = env.vars()
    vars_["CLEARML_CONFIG_FILE"] = str(config)
    res = env.reconcile("apply", "--auto-approve", "--workers", "3", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 workers" in res.stdout
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="datasets", Prefix="store/").get("Contents", [])]
    assert any(k.endswith(".zip") for k in keys), keys  # the data chunks are in the bucket
    got = env.sdk(f"""
        import hashlib, os
        ds = Dataset.get(dataset_project='{env.project}', dataset_name='on-s3')
        root = ds.get_local_copy()
        paths = [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]
        result = {{os.path.relpath(p, root): hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in paths}}
    """, env=vars_)
    assert got == {k: hashlib.sha256(v).hexdigest() for k, v in FILES.items()}
    again = env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_)
    assert again.returncode == 0, again.stdout + again.stderr
    # pull reads the chunks from the bucket, through the SDK's storage, and verifies every file
    pulled = env.reconcile("pull", f"{env.project}/on-s3@1.0.0", "pulled", "--include", "part1/**", env=vars_)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    got_files = {p.relative_to(env.work / "pulled").as_posix(): p.read_bytes()
                 for p in (env.work / "pulled").rglob("*") if p.is_file()}
    assert got_files == {k: v for k, v in FILES.items() if k.startswith("part1/")}
