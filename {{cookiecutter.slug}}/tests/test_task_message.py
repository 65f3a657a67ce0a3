"""Web's tasks, sent with kombu alone (core/kombu_sender.py), are the message Celery's own
`send_task` sends: the same body, headers and properties, on Redis and on RabbitMQ. A Celery
release that changes its message fails here first, not in a worker that cannot read web's."""

import time
from typing import Any

from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message

from {{ cookiecutter.package }}.core.broker_options import SENT_AT, transport_options
from {{ cookiecutter.package }}.core.kombu_sender import KombuSender
from {{ cookiecutter.package }}.core.settings import Settings

from .conftest import broker_client

# What differs between any two sends, by either sender: ids, the sending process, the time.
PER_SEND = {"id", "root_id", "origin", SENT_AT, "correlation_id", "delivery_tag"}
# Celery asks for replies on a queue of its own; web ignores results, so kombu names none.
ONLY_CELERY = {"reply_to"}


def settings_of(env: dict[str, str]) -> Settings:
    fields = {name.lower(): value for name, value in env.items()}
    return Settings.model_validate({k: v for k, v in fields.items() if k in Settings.model_fields})


def received(settings: Settings, count: int) -> list[Message]:
    """The first `count` messages on the settings' task queue, taken off it."""
    url, options = settings.celery_broker_url, transport_options(settings)
    messages: list[Message] = []
    with Connection(url, transport_options=options) as connection:  # type: ignore[no-untyped-call]
        queue = Queue(settings.task_queue)  # type: ignore[no-untyped-call]
        queue = queue(connection.default_channel)
        deadline = time.monotonic() + 10
        while len(messages) < count and time.monotonic() < deadline:
            if (message := queue.get(no_ack=True)) is not None:  # type: ignore[no-untyped-call]
                messages.append(message)
            else:
                time.sleep(0.05)
    return messages


def shape(message: Message) -> dict[str, Any]:
    # On RabbitMQ the headers are also among the properties: compared once, as headers.
    properties = {
        name: value
        for name, value in message.properties.items()
        if name not in PER_SEND | ONLY_CELERY | {"application_headers"}
    }
    headers = {name: value for name, value in message.headers.items() if name not in PER_SEND}
    return {
        "body": message.body,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "headers": headers,
        "properties": properties,
    }


def test_kombu_sends_the_message_celery_sends(queue_env: dict[str, str]) -> None:
    settings = settings_of(queue_env)
    celery = broker_client(queue_env)
    celery.send_task("notes.enrich", args=[7], headers={"request_id": "same-task"})
    sender = KombuSender(settings)
    sender.send_task("notes.enrich", [7], {"request_id": "same-task"})
    sender.close()
    # Its pools are its own: closing it leaves Celery's, in the same process, able to send.
    celery.send_task("notes.enrich", args=[7], headers={"request_id": "same-task"})
    celery.close()

    by_celery, by_kombu, by_celery_again = received(settings, 3)
    assert shape(by_kombu) == shape(by_celery) == shape(by_celery_again)
    assert (
        by_kombu.headers["id"]
        == by_kombu.headers["root_id"]
        == by_kombu.properties["correlation_id"]
    )
    assert by_celery.headers[SENT_AT] <= by_kombu.headers[SENT_AT]
