//! What counts as damage to the journal file, whichever statement stumbles on it: SQLite's own corruption codes,
//! and cells that hold what the schema cannot (text that is not UTF-8, a number where text belongs).

use rusqlite::ErrorCode;

use crate::store::Error;

pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
        // Values the schema cannot hold: text that is not UTF-8, a number where text belongs. SQLite's own
        // integrity check does not look at what cells hold, so damage there first shows when a row is read.
        || matches!(
            e,
            rusqlite::Error::Utf8Error(..)
                | rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
        )
}

/// Reports damage to the file as [`Error::Corrupt`], whichever statement stumbled on it.
pub(super) fn classify(path: &str, err: Error) -> Error {
    match err {
        Error::Sqlite(e) if is_corruption(&e) => corrupt(path, e.to_string()),
        other => other,
    }
}

pub(super) fn corrupt(path: &str, detail: String) -> Error {
    Error::Corrupt { path: path.to_owned(), detail }
}
