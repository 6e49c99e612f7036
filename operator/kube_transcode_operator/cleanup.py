"""What the operator does in S3: mark a job cancelled, and remove a job's partial outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3

from kube_transcode.messages import CONTENT_TYPE, JobCancel, cancelled_marker_key, encode
from kube_transcode_operator.settings import OperatorSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

DELETE_BATCH = 1000  # S3's DeleteObjects limit


class OutputStore:
    """Blocking boto3 calls: run them with asyncio.to_thread."""

    def __init__(self, settings: OperatorSettings, client: S3Client | None = None) -> None:
        self._s3: S3Client = client or boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=_reveal(settings.s3_access_key_id),
            aws_secret_access_key=_reveal(settings.s3_secret_access_key),
        )

    def mark_cancelled(self, bucket: str, cancel: JobCancel) -> None:
        """Workers skip queued messages of this job up to cancel.job.generation."""
        self._s3.put_object(
            Bucket=bucket,
            Key=cancelled_marker_key(cancel.job.uid),
            Body=encode(cancel),
            ContentType=CONTENT_TYPE,
        )

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Remove every object under <prefix>/ (never a sibling such as <prefix>-2/)."""
        deleted = 0
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/"):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in page.get("Contents", []) if "Key" in item
            ]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                self._s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                deleted += len(batch)
        return deleted


def _reveal(secret: Any) -> str | None:
    return secret.get_secret_value() if secret is not None else None
