/// The closed set of error kinds every jhe error maps to. Only the API turns a kind into an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    InvalidInput,
    Unauthenticated,
    Forbidden,
    NotFound,
    /// Existed, and is gone for good (an expired or withdrawn export).
    Gone,
    Conflict,
    Unprocessable,
    TooManyRequests,
    Unavailable,
    Timeout,
    Internal,
}
