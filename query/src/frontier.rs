//! A page's frontier: how far along its sort key a page can reach, known from the catalog before any file is
//! opened.
//!
//! A page in `date` or `_lastUpdated` order is the top `n` rows of that key. The catalog knows, for every file,
//! the bounds of both keys and how many rows each patient has in it (`parquet_file_patient_rows`). When a search
//! filters by nothing but patients, studies, organizations and exact codes, the rows a file holds for the search
//! are exactly the rows of the visible (code, patient) pairs in it. Walking the files from the one whose *worst*
//! key is best, the first `k` files hold at least `n` rows whose key is at least as good as the `k`-th file's
//! worst key `T`; so the page lies entirely on the good side of `T`, and `key >= T` (`<=` ascending) can be added
//! to the page's filters without changing its rows. It lets the scan drop every file that ends before `T` — for
//! one patient's newest page, all days but the last — instead of opening each one to learn the same thing.

/// One file as the frontier sees it: the bounds of the sort key over the whole file, and the rows it holds for the
/// search (every one of which matches it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSpan {
    pub(crate) lowest: i64,
    pub(crate) highest: i64,
    pub(crate) rows: u64,
}

/// The rows of the files a scan bounded by `frontier` (the key at or beyond it in the page's direction) and by
/// the cursor's first key `after` (rows up to it were on earlier pages) still reads: an upper bound of the rows it
/// decodes. A file wholly before the cursor holds no row of the page, and the scan skips it by its statistics.
pub(crate) fn rows_within(files: &[FileSpan], descending: bool, frontier: i64, after: Option<i64>) -> u64 {
    files
        .iter()
        .filter(|file| if descending { file.highest >= frontier } else { file.lowest <= frontier })
        .filter(|file| match after {
            None => true,
            Some(at) if descending => file.lowest <= at,
            Some(at) => file.highest >= at,
        })
        .map(|file| file.rows)
        .fold(0, u64::saturating_add)
}

/// The frontier of a page that needs `needed` rows in `descending` (or ascending) order of a key, starting after
/// `after` (the cursor's first key; rows at exactly `after` may still follow on the page, so a file only counts
/// when it lies strictly beyond it). `None` when the counted files do not hold `needed` rows: the page may need
/// rows of any file.
pub(crate) fn frontier(files: &[FileSpan], descending: bool, after: Option<i64>, needed: u64) -> Option<i64> {
    if needed == 0 {
        return None;
    }
    // Only rows known to be on the page's side of the cursor count.
    let mut counted: Vec<FileSpan> = files
        .iter()
        .filter(|file| file.rows > 0)
        .filter(|file| match after {
            None => true,
            Some(at) if descending => file.highest < at,
            Some(at) => file.lowest > at,
        })
        .copied()
        .collect();
    // The file whose worst key is best comes first.
    if descending {
        counted.sort_unstable_by_key(|file| std::cmp::Reverse(file.lowest));
    } else {
        counted.sort_unstable_by_key(|file| file.highest);
    }
    let mut rows = 0u64;
    for file in counted {
        rows = rows.saturating_add(file.rows);
        if rows >= needed {
            return Some(if descending { file.lowest } else { file.highest });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(lowest: i64, highest: i64, rows: u64) -> FileSpan {
        FileSpan { lowest, highest, rows }
    }

    #[test]
    fn the_newest_files_that_hold_a_page_bound_it() {
        // one file per day, 100 rows each: day d spans [10d, 10d + 9]
        let days: Vec<FileSpan> = (0..10).map(|day| span(10 * day, 10 * day + 9, 100)).collect();
        assert_eq!(frontier(&days, true, None, 100), Some(90), "the last day holds the page");
        assert_eq!(frontier(&days, true, None, 101), Some(80), "one row more needs the day before");
        assert_eq!(frontier(&days, false, None, 150), Some(19));
        assert_eq!(frontier(&days, true, None, 1001), None, "not enough rows anywhere");
        assert_eq!(frontier(&days, true, None, 0), None);
        assert_eq!(rows_within(&days, true, 80, None), 200);
        assert_eq!(rows_within(&days, false, 19, None), 200);
        assert_eq!(rows_within(&days, true, 85, None), 200, "a file reaching the frontier is read whole");
    }

    #[test]
    fn only_files_wholly_past_the_cursor_count() {
        let days: Vec<FileSpan> = (0..10).map(|day| span(10 * day, 10 * day + 9, 100)).collect();
        // the cursor sits inside day 9: day 9's rows may or may not be after it, so days 8 and 7 bound the page
        assert_eq!(frontier(&days, true, Some(95), 150), Some(70));
        // a cursor exactly at a file's highest key: that file's rows at the key may precede the cursor in id order
        assert_eq!(frontier(&days, true, Some(89), 100), Some(70));
        assert_eq!(frontier(&days, false, Some(5), 100), Some(19));
        // deep in a walk, the days already read do not count as rows the scan decodes
        assert_eq!(rows_within(&days, true, 70, Some(95)), 300, "days 9 (holding the cursor), 8 and 7");
        assert_eq!(rows_within(&days, true, 70, Some(89)), 200, "day 9 lies wholly before the cursor");
        assert_eq!(rows_within(&days, true, 70, Some(90)), 300, "day 9 starts at the cursor: its ties may follow");
        assert_eq!(rows_within(&days, false, 19, Some(5)), 200);
        assert_eq!(rows_within(&days, false, 19, Some(10)), 100, "day 0 lies wholly before the cursor");
    }

    #[test]
    fn overlapping_files_are_ranked_by_their_worst_key() {
        // a long file reaching back to 0 must not set the bound while short recent files hold enough rows
        let files = [span(0, 100, 1000), span(90, 99, 60), span(95, 100, 60)];
        assert_eq!(frontier(&files, true, None, 100), Some(90));
        assert_eq!(frontier(&files, true, None, 121), Some(0));
        assert_eq!(frontier(&[span(5, 9, 0)], true, None, 1), None, "files without rows never count");
    }
}
