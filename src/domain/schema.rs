//! How the domain's values look in the OpenAPI document (`utoipa`): the ids and timestamps
//! serialize as strings of their own making, so their schemas are written here, next to them.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use super::{AttachmentId, ConversationId, MessageId, Timestamp, UserId};

fn string(
    format: Option<SchemaFormat>,
    min: Option<usize>,
    max: Option<usize>,
    what: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format)
        .min_length(min)
        .max_length(max)
        .description(Some(what))
        .into()
}

/// Without utoipa's `uuid` feature, which would pull in its own uuid handling for nothing.
fn uuid() -> SchemaFormat {
    SchemaFormat::Custom("uuid".into())
}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        string(
            None,
            Some(1),
            Some(UserId::MAX_CHARS),
            "A user id: the `sub` of the user's token.",
        )
    }
}
impl ToSchema for UserId {}

impl PartialSchema for ConversationId {
    fn schema() -> RefOr<Schema> {
        string(Some(uuid()), None, None, "A conversation id.")
    }
}
impl ToSchema for ConversationId {}

impl PartialSchema for MessageId {
    fn schema() -> RefOr<Schema> {
        string(Some(uuid()), None, None, "A message id.")
    }
}
impl ToSchema for MessageId {}

impl PartialSchema for AttachmentId {
    fn schema() -> RefOr<Schema> {
        string(Some(uuid()), None, None, "An attachment id.")
    }
}
impl ToSchema for AttachmentId {}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        string(
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
            None,
            None,
            "RFC 3339, UTC, with milliseconds.",
        )
    }
}
impl ToSchema for Timestamp {}
