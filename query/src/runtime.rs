//! The query engine's own tokio runtime (style.md §4): Parquet decoding and filtering are CPU-bound, and on the
//! HTTP runtime they would stall unrelated requests. Plans run here; the HTTP task awaits the result.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(crate) struct QueryRuntime {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
    handle: Handle,
}

impl QueryRuntime {
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let runtime =
            Builder::new_multi_thread().worker_threads(threads.max(1)).thread_name("jhe-query").enable_all().build()?;
        let handle = runtime.handle().clone();
        Ok(Self { runtime: Some(runtime), handle })
    }

    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // The engine may be dropped inside another runtime (a server shutting down, a test ending), where a
        // blocking shutdown would panic; queries still running are abandoned.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
