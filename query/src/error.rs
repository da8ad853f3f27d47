//! Errors of the query layer, classified in one place ([`QueryError::kind`]).

use datafusion::error::DataFusionError;
use jhe_schemas::ErrorKind;
use jhe_schemas::table::TableError;

/// Why a read was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A search parameter the caller sent cannot be understood; the message names it.
    #[error("{0}")]
    InvalidParameter(String),
    /// A `_page` past the last page.
    #[error("Invalid page.")]
    InvalidPage,
    /// A cursor this server did not issue, or one for another sort order.
    #[error("the paging cursor is not valid for this search; start again from the first page")]
    InvalidCursor,
    /// The caller named a patient, study or organization outside their organizations.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Catalog(#[from] jhe_catalog::Error),
    #[error("query engine: {0}")]
    DataFusion(#[from] DataFusionError),
    #[error("observation table: {0}")]
    Table(#[from] TableError),
    #[error("a query task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::InvalidParameter(_) | QueryError::InvalidCursor => ErrorKind::InvalidInput,
            QueryError::InvalidPage => ErrorKind::NotFound,
            QueryError::Forbidden(_) => ErrorKind::Forbidden,
            QueryError::Catalog(error) => error.kind(),
            QueryError::DataFusion(error) => datafusion_kind(error),
            QueryError::Table(_) | QueryError::Task(_) => ErrorKind::Internal,
        }
    }

    /// A message a person can act on, for errors that are the caller's doing; `None` for internal errors (log
    /// those, answer with a generic message).
    pub fn user_message(&self) -> Option<String> {
        match self {
            QueryError::Catalog(error) => error.user_message(),
            _ => match self.kind() {
                ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Timeout => None,
                _ => Some(self.to_string()),
            },
        }
    }
}

/// The one classification of engine errors: storage that cannot be reached and a full memory pool are
/// `unavailable` (try again), anything else is a bug or a damaged file (`internal`).
fn datafusion_kind(error: &DataFusionError) -> ErrorKind {
    match error.find_root() {
        DataFusionError::ObjectStore(_) | DataFusionError::ResourcesExhausted(_) => ErrorKind::Unavailable,
        DataFusionError::External(source) if source.downcast_ref::<jhe_catalog::Error>().is_some() => {
            source.downcast_ref::<jhe_catalog::Error>().map_or(ErrorKind::Internal, jhe_catalog::Error::kind)
        }
        _ => ErrorKind::Internal,
    }
}
