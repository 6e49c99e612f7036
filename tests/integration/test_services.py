"""RabbitMQ and MinIO of the local stack carry real data."""

from __future__ import annotations

from typing import Any

import pika
import pytest

from tests.harness.broker import Vhost

pytestmark = pytest.mark.integration


def test_rabbitmq_publish_confirm_and_consume_in_priority_order(vhost: Vhost) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(vhost.url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("jobs", durable=True, arguments={"x-max-priority": 3})
        for body, priority in ((b"normal-1", 1), (b"normal-2", 1), (b"urgent", 3)):
            ch.basic_publish(
                "",
                "jobs",
                body,
                pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, priority=priority),
                mandatory=True,
            )
        assert vhost.queue("jobs")["durable"] is True
        received = []
        for _ in range(3):
            method, _props, body = ch.basic_get("jobs", auto_ack=False)
            assert method is not None
            received.append(body)
            ch.basic_ack(method.delivery_tag)
        assert received == [b"urgent", b"normal-1", b"normal-2"]
    finally:
        conn.close()


def test_minio_put_and_get_with_boto3(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 4096
    s3.put_object(Bucket=bucket, Key="a/b/segment_000.ts", Body=body, ContentType="video/mp2t")
    got = s3.get_object(Bucket=bucket, Key="a/b/segment_000.ts")
    assert got["Body"].read() == body
    assert got["ContentType"] == "video/mp2t"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in listed["Contents"]] == ["a/b/segment_000.ts"]
