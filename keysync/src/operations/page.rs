//! Listing in pages: a cursor that says where the next page starts, and a page size
//! capped at [`MAX_PAGE_LIMIT`], so an organization with 100,000 keys can be walked
//! without one answer holding them all. Listings run oldest first, by `(created_at,
//! id)`, and a cursor is the position of the last row of a page: rows created meanwhile
//! come after it, none is shown twice or skipped.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// Rows in a page when the caller does not say.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The most rows in a page, whatever the caller asks for.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// The position after which a page starts. Opaque to callers: 48 hex digits (the row's
/// creation time in microseconds, then its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// A cursor that no page handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: pass the next_cursor of the previous page unchanged")]
pub struct InvalidCursor;

impl Cursor {
    /// The cursor after `created_at` and `id`, the last row of a page.
    pub fn after(created_at: DateTime<Utc>, id: Uuid) -> Cursor {
        Cursor { created_at, id }
    }

    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes[8..].copy_from_slice(self.id.as_bytes());
        hex::encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Cursor, InvalidCursor> {
        let mut bytes = [0u8; 24];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| InvalidCursor)?;
        let (micros, id) = bytes.split_at(8);
        let micros = i64::from_be_bytes(micros.try_into().map_err(|_| InvalidCursor)?);
        let created_at = DateTime::from_timestamp_micros(micros).ok_or(InvalidCursor)?;
        let id = Uuid::from_slice(id).map_err(|_| InvalidCursor)?;
        Ok(Cursor { created_at, id })
    }
}

/// Which page to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// `None`: the first page.
    pub after: Option<Cursor>,
    /// 1 to [`MAX_PAGE_LIMIT`].
    limit: u32,
}

impl PageRequest {
    /// A page of up to `limit` rows after `after`; `limit` is capped at
    /// [`MAX_PAGE_LIMIT`] and raised to 1.
    pub fn new(after: Option<Cursor>, limit: u32) -> PageRequest {
        PageRequest {
            after,
            limit: limit.clamp(1, MAX_PAGE_LIMIT),
        }
    }

    /// The first page, as large as pages get (for callers that walk them all).
    pub fn first() -> PageRequest {
        PageRequest::new(None, MAX_PAGE_LIMIT)
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The page after this one, from the `next_cursor` it handed out.
    pub fn next(&self, next_cursor: &str) -> PageRequest {
        PageRequest {
            after: Cursor::decode(next_cursor).ok(),
            limit: self.limit,
        }
    }

    /// The rows to fetch: one more than the page holds, to tell whether another follows.
    pub(crate) fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Ends the query of a listing newest first by `(time, id)`, the columns named (SQL
    /// of the caller's own, never input): the page starts after the cursor, and one row
    /// more than the page holds is fetched ([`PageRequest::cut`] tells the rest).
    pub(crate) fn push_newest_first(
        &self,
        query: &mut QueryBuilder<Postgres>,
        time: &'static str,
        id: &'static str,
    ) {
        if let Some(after) = self.after {
            query
                .push(format!(" AND ({time}, {id}) < ("))
                .push_bind(after.created_at)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        query
            .push(format!(" ORDER BY {time} DESC, {id} DESC LIMIT "))
            .push_bind(self.fetch());
    }

    /// Cuts `rows` (fetched with [`PageRequest::fetch`]) to the page, and the cursor of
    /// the next page when there is one; `position` gives a row's `(created_at, id)`.
    pub(crate) fn cut<T>(
        &self,
        mut rows: Vec<T>,
        position: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> (Vec<T>, Option<String>) {
        let limit = self.limit as usize;
        if rows.len() <= limit {
            return (rows, None);
        }
        rows.truncate(limit);
        let next = rows.last().map(|row| {
            let (created_at, id) = position(row);
            Cursor::after(created_at, id).encode()
        });
        (rows, next)
    }
}

/// Up to `limit` rows, walking pages from the first: `fetch` lists one page and the
/// cursor of the next (`None` on the last). For the CLI's listings, which print rows
/// rather than pages.
pub async fn collect<T, E, Fetched>(
    limit: u32,
    mut fetch: impl FnMut(PageRequest) -> Fetched,
) -> Result<Vec<T>, E>
where
    Fetched: Future<Output = Result<(Vec<T>, Option<String>), E>>,
{
    let mut all: Vec<T> = Vec::new();
    let mut after = None;
    loop {
        let remaining = limit.saturating_sub(u32::try_from(all.len()).unwrap_or(u32::MAX));
        if remaining == 0 {
            return Ok(all);
        }
        let page = PageRequest::new(after, remaining);
        let (rows, next_cursor) = fetch(page).await?;
        all.extend(rows);
        match next_cursor {
            Some(next) => after = page.next(&next).after,
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        let text = cursor.encode();
        assert_eq!(text.len(), 48);
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
    }

    #[test]
    fn other_text_is_not_a_cursor() {
        for text in ["", "abc", "zz", &"0".repeat(46), &"0".repeat(50)] {
            assert_eq!(Cursor::decode(text), Err(InvalidCursor), "{text}");
        }
    }

    #[test]
    fn limits_are_capped_and_pages_cut() {
        assert_eq!(PageRequest::new(None, 0).limit(), 1);
        assert_eq!(PageRequest::new(None, 5000).limit(), MAX_PAGE_LIMIT);
        let page = PageRequest::new(None, 2);
        assert_eq!(page.fetch(), 3);
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let position = |n: &u128| (at, Uuid::from_u128(*n));
        assert_eq!(page.cut(vec![1, 2], position), (vec![1, 2], None));
        let (rows, next) = page.cut(vec![1, 2, 3], position);
        assert_eq!(rows, vec![1, 2]);
        let next = next.unwrap();
        assert_eq!(
            Cursor::decode(&next).unwrap(),
            Cursor::after(at, Uuid::from_u128(2))
        );
        assert_eq!(
            page.next(&next).after,
            Some(Cursor::after(at, Uuid::from_u128(2)))
        );
    }
}
