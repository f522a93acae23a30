//! Sizes the whole system agrees on: what a form accepts is what a change may carry.

/// Open311's limit on `description`.
pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
/// A `string` attribute is one line; `text` may be longer but is still bounded.
pub const MAX_STRING_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Each of a reporter's contact details.
pub const MAX_CONTACT_CHARS: usize = 200;
/// An address, an assignee.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// A note's text.
pub const MAX_NOTE_CHARS: usize = 4_000;
/// An attribute answer holds at most this many values, each at most this many bytes.
pub const MAX_ANSWER_VALUES: usize = 32;
pub const MAX_ANSWER_BYTES: usize = 4_000;
/// An attribute code, as a change names it.
pub const MAX_ATTRIBUTE_CODE: usize = 64;
/// A replica id, and the id of a note.
pub const MAX_REPLICA_CHARS: usize = 64;
pub const MAX_MEMBER_ID: usize = 128;

/// Counts characters without walking a huge string: anything over `max` bytes may still fit
/// (multi-byte characters), anything over `4 * max` bytes cannot.
pub fn too_long(s: &str, max: usize) -> bool {
    s.len() > max && (s.len() > 4 * max || s.chars().count() > max)
}
