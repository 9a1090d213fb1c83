"""The old stack's producer, as its Airflow DAG (kafka_stream.py) wrote users to Kafka.

`format_data` and the `send` call are the old DAG's code; the only changes are that users are
read from a randomuser-compatible API in pages (the DAG fetched one per request) and that
`id` is `str(uuid.uuid4())` (the DAG's `uuid.uuid4()` is not JSON-serialisable).
Every produced message is also written, one per line, to --out for the test's expectations.

usage: producer.py --api URL --seed S --count N --bootstrap HOST:PORT --topic T --out FILE
"""
import argparse
import json
import urllib.request
import uuid

from kafka import KafkaProducer


def format_data(res):
    data = {}
    location = res['location']
    data['id'] = str(uuid.uuid4())
    data['first_name'] = res['name']['first']
    data['last_name'] = res['name']['last']
    data['gender'] = res['gender']
    data['address'] = f"{str(location['street']['number'])} {location['street']['name']}, " \
                      f"{location['city']}, {location['state']}, {location['country']}"
    data['post_code'] = location['postcode']
    data['email'] = res['email']
    data['username'] = res['login']['username']
    data['dob'] = res['dob']['date']
    data['registered_date'] = res['registered']['date']
    data['phone'] = res['phone']
    data['picture'] = res['picture']['medium']
    return data


def users(api, seed, count, page_size=5000):
    page = 1
    left = count
    while left > 0:
        n = min(page_size, left)
        url = f"{api}?results={n}&page={page}&seed={seed}"
        with urllib.request.urlopen(url, timeout=60) as response:
            body = json.loads(response.read())
        for res in body['results'][:n]:
            yield res
        left -= n
        page += 1


def main():
    parser = argparse.ArgumentParser()
    for flag in ('--api', '--seed', '--bootstrap', '--topic', '--out'):
        parser.add_argument(flag, required=True)
    parser.add_argument('--count', type=int, required=True)
    args = parser.parse_args()
    producer = KafkaProducer(bootstrap_servers=[args.bootstrap], max_block_ms=5000)
    with open(args.out, 'w', encoding='utf-8') as out:
        for res in users(args.api, args.seed, args.count):
            message = json.dumps(format_data(res))
            future = producer.send(args.topic, message.encode('utf-8'))
            out.write(message + '\n')
        producer.flush()
        future.get(timeout=30)


if __name__ == '__main__':
    main()
