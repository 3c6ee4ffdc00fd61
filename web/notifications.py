"""Intercom webhook notifications: their shape and who they are about.

Guarantees:
- :class:`Notification` accepts Intercom's envelope (``type: notification_event``,
  ``id``, ``topic``, ``data.item``) and ignores the fields it does not use, so a
  new field from Intercom never breaks delivery;
- a conversation topic's item is checked against :class:`Conversation` (the
  ``source.author`` and ``contacts.contacts[]`` parts only);
- :func:`subject_of` (pure) names the contact a conversation notification is about:
  the first listed contact (else a user/lead author) for the id, the author's
  email for the contact's email when the author is that contact, and the author's
  email for screening; ``None`` when the conversation names no contact at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
#: Author types that are contacts (``user`` and ``lead`` are the names Intercom's webhooks use).
CONTACT_AUTHOR_TYPES = frozenset({"user", "lead", "contact"})


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NotificationData(_Lenient):
    item: dict[str, Any] = Field(
        description="The object the topic is about (a conversation for conversation.* topics)."
    )


class Notification(_Lenient):
    """The webhook envelope Intercom posts."""

    type: Literal["notification_event"]
    id: str = Field(pattern=ID_PATTERN, description="Notification id; the same on a retry.")
    topic: str = Field(min_length=1, max_length=128)
    app_id: str | None = None
    created_at: int | None = None
    data: NotificationData


def _blank_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class Author(_Lenient):
    type: str | None = None
    id: str | None = Field(None, pattern=ID_PATTERN)
    email: str | None = Field(None, max_length=512)

    _blank = field_validator("id", "email", mode="before")(_blank_to_none)


class Source(_Lenient):
    author: Author | None = None


class ContactRef(_Lenient):
    id: str = Field(pattern=ID_PATTERN)
    external_id: str | None = None


class ContactList(_Lenient):
    contacts: list[ContactRef] = Field(default_factory=list)


class Conversation(_Lenient):
    """The parts of Intercom's conversation object the receiver reads."""

    type: Literal["conversation"] = "conversation"
    id: str | None = None
    source: Source | None = None
    contacts: ContactList | None = None


@dataclass(frozen=True)
class Subject:
    contact_id: str | None
    email: str | None
    author_email: str | None


def subject_of(conversation: Conversation) -> Subject | None:
    """Who the conversation's notification is about (see the module docstring)."""
    author = conversation.source.author if conversation.source else None
    author_is_contact = author is not None and (author.type or "").lower() in CONTACT_AUTHOR_TYPES
    listed = conversation.contacts.contacts if conversation.contacts else []
    contact_id = listed[0].id if listed else None
    if contact_id is None and author_is_contact and author is not None and author.id:
        contact_id = author.id
    email = None
    if author_is_contact and author is not None and (author.id is None or author.id == contact_id):
        email = author.email
    if contact_id is None and email is None:
        return None
    return Subject(contact_id=contact_id, email=email, author_email=author.email if author else None)
