"""What the operator does in S3: mark a job cancelled, and remove a job's partial outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions

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
        try:
            self._s3.put_object(
                Bucket=bucket,
                Key=cancelled_marker_key(cancel.job.uid),
                Body=encode(cancel),
                ContentType=CONTENT_TYPE,
            )
        except botocore.exceptions.ClientError as error:
            # No bucket, no outputs: a worker cannot write there either, so nothing to stop.
            if not _no_such_bucket(error):
                raise

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Remove every object under <prefix>/ (never a sibling such as <prefix>-2/)."""
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/")
        try:
            return self._delete_pages(bucket, pages)
        except botocore.exceptions.ClientError as error:
            if _no_such_bucket(error):
                return 0  # the bucket went first: nothing of the job's is left to remove
            raise

    def _delete_pages(self, bucket: str, pages: Any) -> int:
        deleted = 0
        for page in pages:
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in page.get("Contents", []) if "Key" in item
            ]
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                self._s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                deleted += len(batch)
        return deleted


def _no_such_bucket(error: botocore.exceptions.ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "NoSuchBucket"


def _reveal(secret: Any) -> str | None:
    return secret.get_secret_value() if secret is not None else None
