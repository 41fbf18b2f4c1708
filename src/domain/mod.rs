//! Domain types: validated identifiers, user text, timestamps and the protocol's objects.
//!
//! Untrusted input is parsed into these types once, at the edge; everything past the edge
//! works with values that are known to be valid.

mod attachment;
mod ids;
mod limits;
mod model;
// The OpenAPI document's view of the domain's values.
mod schema;
mod search;
mod text;
mod time;

pub use attachment::{Attachment, AttachmentName};
pub use ids::{AttachmentId, ClientId, ConversationId, ExternalId, MessageId, UserId};
pub use limits::Limits;
pub use model::{
    Ban, Conversation, ConversationKind, MEMBERS_PAGE, Member, MemberCursor, Message, MessageKind,
    ReadState, Role, is_large, role_rank,
};
pub use search::{SearchQuery, Snippet};
pub use text::{ConversationTitle, DisplayName, MessageBody, TextError};
pub use time::Timestamp;
