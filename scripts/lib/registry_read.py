"""Reads a topic with confluent-kafka and its schema registry JSON Schema deserializer.

Usage: registry_read.py BOOTSTRAP REGISTRY_URL TOPIC COUNT [TIMEOUT_S]
Prints one JSON line per record ({"partition", "offset", "key", "value"}) and exits 0 once
COUNT records were read, 1 if the timeout came first. The deserializer takes the schema id
from each value's Confluent framing, fetches that schema from the registry and validates the
value against it: a record it cannot read stops the script with its error (exit 2).
REGISTRY_URL "-": no registry; "value" is then the raw value as text (plain JSON records).
"""

import json
import signal
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    bootstrap, registry_url, topic, count = sys.argv[1:5]
    count = int(count)
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    if registry_url == "-":
        def deserialize(value, _ctx):
            return value.decode("utf-8")
    else:
        # A request timeout (httpx's default here is none): one lost answer of a loaded
        # registry hung a CI run for 8 minutes; the client retries a timed-out request.
        registry = SchemaRegistryClient({"url": registry_url, "timeout": 10})
        # schema_str None: the writer's schema, by the id in the record.
        deserialize = JSONDeserializer(None, schema_registry_client=registry)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"registry-read-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    deadline = time.monotonic() + timeout
    # Whatever hangs (the registry, the broker, close()), the process ends 30 s past the
    # deadline: SIGALRM's default action terminates it, and the caller sees the failure.
    signal.alarm(int(timeout) + 30)
    # Partitions assigned, not subscribed: no consumer group to join (the shared broker's group
    # coordinator is not part of what is tested here, and a slow join stalled a run).
    metadata = consumer.list_topics(topic, timeout=max(1.0, deadline - time.monotonic()))
    partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    read = 0
    try:
        while read < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                print(f"kafka error: {msg.error()}", file=sys.stderr)
                continue
            ctx = SerializationContext(msg.topic(), MessageField.VALUE, msg.headers())
            try:
                value = deserialize(msg.value(), ctx)
            except Exception as e:  # the script's verdict: which record, why
                print(f"offset {msg.partition()}/{msg.offset()}: {type(e).__name__}: {e}", file=sys.stderr)
                return 2
            key = msg.key().decode() if msg.key() is not None else None
            print(json.dumps({"partition": msg.partition(), "offset": msg.offset(),
                              "key": key, "value": value}), flush=True)
            read += 1
    finally:
        consumer.close()
    return 0 if read >= count else 1


if __name__ == "__main__":
    sys.exit(main())
