/// One page of a list: 1-based page number and page size, already validated by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    pub fn limit(self) -> i64 {
        i64::from(self.page_size)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.page_size)
    }
}

/// The rows of one page and the total count under the same filter.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub count: i64,
    pub items: Vec<T>,
}
