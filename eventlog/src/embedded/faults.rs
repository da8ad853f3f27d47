//! The fsync and truncation of a partition's active segment, with failures injected on request when the
//! `fault-injection` feature (test support, off in builds of the server) is on.

use crate::Partition;
use std::fs::File;
use std::io;

/// Failures to report for the fsyncs and truncations of a topic's partitions.
#[derive(Debug, Default)]
pub(super) struct IoFaults {
    /// Per partition: how many of its next fsyncs and truncations fail.
    #[cfg(feature = "fault-injection")]
    planned: std::sync::Mutex<std::collections::HashMap<Partition, usize>>,
}

impl IoFaults {
    /// `fdatasync` of `file`, the active segment of `partition`. An injected failure is reported after the sync
    /// really happened: the worst case, where the data is on disk although the caller hears that it may not be.
    pub(super) fn sync_data(&self, partition: Partition, file: &File) -> io::Result<()> {
        file.sync_data()?;
        if self.take_planned(partition) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }

    /// Truncates `file`, the active segment of `partition`, to `len`. An injected failure leaves the file as it is.
    pub(super) fn set_len(&self, partition: Partition, file: &File, len: u64) -> io::Result<()> {
        if self.take_planned(partition) {
            return Err(io::Error::other("injected truncation failure"));
        }
        file.set_len(len)
    }

    #[cfg(not(feature = "fault-injection"))]
    fn take_planned(&self, _partition: Partition) -> bool {
        false
    }

    #[cfg(feature = "fault-injection")]
    fn take_planned(&self, partition: Partition) -> bool {
        let mut planned = self.planned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match planned.get_mut(&partition) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// Makes the next `count` fsyncs and truncations of `partition` fail.
    #[cfg(feature = "fault-injection")]
    pub(super) fn plan(&self, partition: Partition, count: usize) {
        self.planned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(partition, count);
    }
}
