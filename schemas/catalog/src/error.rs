use jhe_schemas::ErrorKind;

/// Errors of the control plane. Variants name what failed and carry ids, never secrets or payloads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `entity` is the model name the reference uses in its 404 message ("No Patient matches the given query.").
    #[error("No {entity} matches the given query.")]
    NotFound { entity: &'static str },
    /// Something the request names is not there for the caller, with a message saying which (answered like
    /// [`Error::NotFound`], so an object outside the caller's reach reads the same as one that does not exist).
    #[error("{0}")]
    Absent(String),
    /// A request that contradicts what is stored (a duplicate identifier, an existing membership, …).
    #[error("{0}")]
    Conflict(String),
    /// A request whose values are not acceptable; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error("invalid database url: {reason}")]
    InvalidDatabaseUrl { reason: String },
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::Absent(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::InvalidDatabaseUrl { .. } | Error::PasswordHash(_) | Error::Migrate(_) => ErrorKind::Internal,
            Error::Database(source) => database_error_kind(source),
        }
    }

    /// A message a person can act on, for errors that are the caller's doing. `None` for internal errors.
    pub fn user_message(&self) -> Option<String> {
        match self.kind() {
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Timeout => None,
            _ => Some(match self {
                Error::Database(sqlx::Error::Database(db)) => constraint_message(db.as_ref()),
                other => other.to_string(),
            }),
        }
    }
}

/// The safety net: a constraint violation that a handler did not check first is still the caller's mistake.
fn database_error_kind(error: &sqlx::Error) -> ErrorKind {
    match error {
        sqlx::Error::RowNotFound => ErrorKind::NotFound,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => ErrorKind::Unavailable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("23505") => ErrorKind::Conflict,
            // foreign key, not null, check violations; invalid text representation, out of range values
            Some("23503" | "23502" | "23514" | "22P02" | "22003" | "22007" | "22008" | "22001") => {
                ErrorKind::InvalidInput
            }
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

fn constraint_message(db: &dyn sqlx::error::DatabaseError) -> String {
    let constraint = db.constraint().unwrap_or("a constraint");
    match db.code().as_deref() {
        Some("23505") => format!("this would create a duplicate (`{constraint}`)"),
        Some("23503") => format!("a referenced record does not exist or is still in use (`{constraint}`)"),
        Some("23514") => format!("a value is not allowed (`{constraint}`)"),
        Some("23502") => "a required value is missing".to_string(),
        _ => "a value has the wrong format or is out of range".to_string(),
    }
}
