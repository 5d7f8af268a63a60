//! Server log files: rotation by copytruncate, reading a chunk of the
//! current file for `/v1/logs/{server}` (from an offset, the last lines or
//! the last bytes), and the agent's own marker lines (started, exited, stop
//! command) written into the same file.
//!
//! The last lines are found by reading back from the end in bounded
//! blocks, never the whole file; lines before a rotation are in the
//! rotated file and are not looked for.
//!
//! Rotation copies and truncates instead of renaming because the server
//! holds the file open and writes it directly (O_APPEND), so it keeps
//! logging to the same path without being told anything.

use crate::layout::Layout;
use dure_api::{LogChunk, LogQuery};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Default size above which a log is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of rotated files kept (`server.log.1` … `server.log.3`).
pub const DEFAULT_KEEP: u32 = 3;
/// Bytes returned from the end of the log when the query gives no offset.
pub const DEFAULT_TAIL: u64 = 16 * 1024;
/// The most bytes one chunk carries.
pub const MAX_CHUNK: u64 = 1024 * 1024;

/// When and how far logs are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file is larger than this.
    pub max_bytes: u64,
    /// Rotated files kept; older ones are deleted.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

/// Serialises rotations: the periodic sweep and a spawn may look at the
/// same file at once, and two interleaved copytruncates would lose a file.
static ROTATING: Mutex<()> = Mutex::new(());

/// `server.log` → `server.log.<n>`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}"));
    path.with_file_name(name)
}

/// Rotates `path` when it is larger than `rotation.max_bytes`: shifts
/// `path.N` up by one (dropping the oldest), copies the current file to
/// `path.1` and truncates it. Returns whether it rotated.
pub fn rotate_if_needed(path: &Path, rotation: Rotation) -> io::Result<bool> {
    let _guard = ROTATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let size = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= rotation.max_bytes {
        return Ok(false);
    }
    if rotation.keep > 0 {
        for n in (1..rotation.keep).rev() {
            match std::fs::rename(rotated_path(path, n), rotated_path(path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::copy(path, rotated_path(path, 1))?;
    }
    // Bytes the server writes between the copy and the truncate are lost;
    // that window is the price of not having to signal the server.
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Rotates every server log under the data directory that needs it.
pub fn rotate_all(layout: &Layout, rotation: Rotation) {
    let entries = match std::fs::read_dir(layout.servers_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::warn!(dir = %layout.servers_dir().display(), %error, "cannot list server directories for log rotation");
            return;
        }
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = layout.log_path(&name);
        match rotate_if_needed(&path, rotation) {
            Ok(true) => tracing::info!(log = %path.display(), "rotated server log"),
            Ok(false) => {}
            Err(error) => tracing::warn!(log = %path.display(), %error, "cannot rotate server log"),
        }
    }
}

/// Reads one chunk of a log: from `query.offset` (from 0 again when the
/// offset is past the end, because rotation truncated the file), or else
/// the last `query.lines` lines or the last `query.tail` bytes, never more
/// than [`MAX_CHUNK`]. A missing file reads as empty. The query is checked
/// by [`LogQuery::check`] first.
pub fn read_chunk(path: &Path, query: &LogQuery) -> io::Result<LogChunk> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                offset: 0,
                next_offset: 0,
                size: 0,
                data: String::new(),
            })
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let (mut start, tailing) = match query.offset {
        Some(offset) if offset <= size => (offset, false),
        Some(_) => (0, false),
        None => match query.lines {
            Some(lines) => (
                start_of_last_lines(&file, size, lines, LINE_SEARCH_BLOCK)?,
                true,
            ),
            None => {
                let tail = query.tail.unwrap_or(DEFAULT_TAIL).min(MAX_CHUNK);
                (size.saturating_sub(tail), true)
            }
        },
    };
    let len = (size - start).min(MAX_CHUNK);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(len).read_to_end(&mut bytes)?;
    if tailing && start > 0 {
        // The tail may begin inside a character; start at the next one.
        let skip = bytes
            .iter()
            .take(3)
            .take_while(|b| is_continuation(**b))
            .count();
        bytes.drain(..skip);
        start += skip as u64;
    }
    bytes.truncate(bytes.len() - incomplete_suffix(&bytes));
    let next_offset = start + bytes.len() as u64;
    Ok(LogChunk {
        offset: start,
        next_offset,
        size,
        data: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Bytes read per step when looking back for the start of the last lines.
const LINE_SEARCH_BLOCK: usize = 64 * 1024;

/// Where the last `lines` lines of `file` (`size` bytes) begin. A trailing
/// newline ends the last line and starts no new one; a last line without
/// one counts too. The search reads back in blocks of `block` bytes and
/// never further than [`MAX_CHUNK`] from the end: when the lines begin
/// before that, the answer is the first line that begins within it (or
/// that point itself, inside one very long line).
fn start_of_last_lines(file: &File, size: u64, lines: u64, block: usize) -> io::Result<u64> {
    if lines == 0 {
        return Ok(size);
    }
    let floor = size.saturating_sub(MAX_CHUNK);
    let mut buffer = vec![0u8; block.min(usize::try_from(size - floor).unwrap_or(block))];
    let mut found = 0u64;
    let mut earliest = None;
    let mut end = size;
    while end > floor {
        let begin = end.saturating_sub(block as u64).max(floor);
        let bytes = &mut buffer[..usize::try_from(end - begin).expect("at most one block")];
        match file.read_exact_at(bytes, begin) {
            // Truncated meanwhile (rotation): the new file is short, read it all.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            other => other?,
        }
        for (i, byte) in bytes.iter().enumerate().rev() {
            let next = begin + i as u64 + 1;
            if *byte != b'\n' || next == size {
                continue;
            }
            found += 1;
            if found == lines {
                return Ok(next);
            }
            earliest = Some(next);
        }
        end = begin;
    }
    Ok(if floor == 0 {
        0
    } else {
        earliest.unwrap_or(floor)
    })
}

fn is_continuation(byte: u8) -> bool {
    byte & 0b1100_0000 == 0b1000_0000
}

/// Length of a UTF-8 sequence cut off at the end of `bytes` (0 when the
/// last character is whole), so a follower reads it whole next time.
fn incomplete_suffix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let byte = bytes[bytes.len() - back];
        if is_continuation(byte) {
            continue;
        }
        let needed = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

/// Appends one line from the agent itself (`[dure-agent] …`) to a log, so
/// someone reading the log sees starts, exits and stops in line with the
/// server's own output. After a server line without a newline (a server
/// that exited mid-line) the marker starts on a line of its own, so it
/// never joins that line and line tails count it as one.
pub fn append_marker(path: &Path, message: &str) {
    let result = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .and_then(|mut file| {
            let line = format!("[dure-agent] {message}\n");
            let line = if ends_mid_line(&file)? {
                format!("\n{line}")
            } else {
                line
            };
            file.write_all(line.as_bytes())
        });
    if let Err(error) = result {
        tracing::debug!(log = %path.display(), %error, "cannot append to server log");
    }
}

/// Whether the file's last byte is something else than a newline.
fn ends_mid_line(file: &File) -> io::Result<bool> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, size - 1)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(offset: Option<u64>, tail: Option<u64>) -> LogQuery {
        LogQuery {
            offset,
            tail,
            lines: None,
        }
    }

    fn last_lines(lines: u64) -> LogQuery {
        LogQuery {
            lines: Some(lines),
            ..LogQuery::default()
        }
    }

    /// The last `n` lines of `text`, the obvious way.
    fn naive_last_lines(text: &str, n: u64) -> &str {
        let pieces: Vec<&str> = text.split_inclusive('\n').collect();
        let skip = pieces
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
        let start: usize = pieces[..skip].iter().map(|p| p.len()).sum();
        &text[start..]
    }

    #[test]
    fn reads_the_last_lines_whatever_the_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let texts = [
            "",
            "\n",
            "one line without newline",
            "a\nb\nc\n",
            "a\nb\nc",
            "a\n\n\nb\n\n",
            "first\nsecond line is longer\nthird\n\nfifth without newline",
        ];
        for text in texts {
            std::fs::write(&log, text).unwrap();
            let file = File::open(&log).unwrap();
            let size = text.len() as u64;
            for n in 0..8 {
                let want = naive_last_lines(text, n);
                for block in 1..6 {
                    let start = start_of_last_lines(&file, size, n, block).unwrap();
                    assert_eq!(
                        &text[start as usize..],
                        want,
                        "{text:?}, {n} lines, block {block}"
                    );
                }
                let chunk = read_chunk(&log, &last_lines(n)).unwrap();
                assert_eq!(chunk.data, want, "{text:?}, {n} lines");
                assert_eq!(chunk.next_offset, size);
            }
        }
    }

    #[test]
    fn line_tails_take_all_with_many_lines_and_nothing_with_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        let chunk = read_chunk(&log, &last_lines(2)).unwrap();
        assert_eq!((chunk.offset, chunk.data.as_str()), (2, "b\nc\n"));
        let chunk = read_chunk(&log, &last_lines(u64::MAX)).unwrap();
        assert_eq!((chunk.offset, chunk.data.as_str()), (0, "a\nb\nc\n"));
        let chunk = read_chunk(&log, &last_lines(0)).unwrap();
        assert_eq!(
            (chunk.offset, chunk.next_offset, chunk.data.as_str()),
            (6, 6, "")
        );
        let missing = read_chunk(&dir.path().join("none.log"), &last_lines(5)).unwrap();
        assert_eq!((missing.size, missing.data.as_str()), (0, ""));
    }

    #[test]
    fn line_tails_never_reach_back_further_than_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        // 100-byte lines, a little more than a chunk of them.
        let line = format!("{}\n", "x".repeat(99));
        let count = MAX_CHUNK / 100 + 5;
        std::fs::write(&log, line.repeat(count as usize)).unwrap();
        let chunk = read_chunk(&log, &last_lines(u64::MAX)).unwrap();
        assert!(chunk.next_offset - chunk.offset <= MAX_CHUNK);
        assert_eq!(chunk.offset % 100, 0, "starts at a line");
        assert!(chunk.data.starts_with(&line));
        assert_eq!(chunk.next_offset, count * 100);

        // One line longer than a chunk: its last chunk of bytes.
        std::fs::write(&log, "y".repeat((MAX_CHUNK + 10) as usize)).unwrap();
        let chunk = read_chunk(&log, &last_lines(1)).unwrap();
        assert_eq!((chunk.offset, chunk.next_offset), (10, MAX_CHUNK + 10));
    }

    #[test]
    fn rotation_shifts_files_and_keeps_three() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let rotation = Rotation {
            max_bytes: 10,
            keep: 3,
        };
        std::fs::write(&log, b"short").unwrap();
        assert!(!rotate_if_needed(&log, rotation).unwrap());
        for round in 1..=5 {
            std::fs::write(&log, format!("round {round} is long enough")).unwrap();
            assert!(rotate_if_needed(&log, rotation).unwrap());
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        }
        let read = |n| std::fs::read_to_string(rotated_path(&log, n)).unwrap();
        assert_eq!(read(1), "round 5 is long enough");
        assert_eq!(read(2), "round 4 is long enough");
        assert_eq!(read(3), "round 3 is long enough");
        assert!(!rotated_path(&log, 4).exists());
        assert!(!rotate_if_needed(&dir.path().join("missing.log"), rotation).unwrap());
    }

    #[test]
    fn a_writer_in_append_mode_continues_at_the_start_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let mut writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writer.write_all(&[b'x'; 100]).unwrap();
        let rotation = Rotation {
            max_bytes: 50,
            keep: 3,
        };
        assert!(rotate_if_needed(&log, rotation).unwrap());
        writer.write_all(b"after").unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"after");
    }

    #[test]
    fn reads_from_an_offset_and_from_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, b"0123456789").unwrap();

        let chunk = read_chunk(&log, &query(Some(4), None)).unwrap();
        assert_eq!((chunk.offset, chunk.next_offset, chunk.size), (4, 10, 10));
        assert_eq!(chunk.data, "456789");

        let chunk = read_chunk(&log, &query(None, Some(3))).unwrap();
        assert_eq!((chunk.offset, chunk.data.as_str()), (7, "789"));

        let chunk = read_chunk(&log, &query(None, None)).unwrap();
        assert_eq!((chunk.offset, chunk.data.as_str()), (0, "0123456789"));

        let chunk = read_chunk(&log, &query(Some(10), None)).unwrap();
        assert_eq!(
            (chunk.offset, chunk.next_offset, chunk.data.as_str()),
            (10, 10, "")
        );
    }

    #[test]
    fn an_offset_past_the_end_starts_again_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, b"new").unwrap();
        let chunk = read_chunk(&log, &query(Some(500), None)).unwrap();
        assert_eq!((chunk.offset, chunk.next_offset, chunk.size), (0, 3, 3));
        assert_eq!(chunk.data, "new");
    }

    #[test]
    fn chunks_are_capped_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let missing = read_chunk(&log, &query(Some(7), None)).unwrap();
        assert_eq!(
            (missing.offset, missing.size, missing.data.as_str()),
            (0, 0, "")
        );

        std::fs::write(&log, vec![b'a'; (MAX_CHUNK + 10) as usize]).unwrap();
        let chunk = read_chunk(&log, &query(Some(0), None)).unwrap();
        assert_eq!(chunk.next_offset, MAX_CHUNK);
        let chunk = read_chunk(&log, &query(None, Some(u64::MAX))).unwrap();
        assert_eq!((chunk.offset, chunk.next_offset), (10, MAX_CHUNK + 10));
    }

    #[test]
    fn characters_are_never_split_between_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        // "é" is two bytes; the file ends with the first half of "한" (3 bytes).
        let mut bytes = "aé".as_bytes().to_vec();
        bytes.extend_from_slice(&"한".as_bytes()[..2]);
        std::fs::write(&log, &bytes).unwrap();

        let chunk = read_chunk(&log, &query(Some(0), None)).unwrap();
        assert_eq!((chunk.data.as_str(), chunk.next_offset), ("aé", 3));

        // A tail starting inside "é" starts after it.
        let chunk = read_chunk(&log, &query(None, Some(3))).unwrap();
        assert_eq!((chunk.offset, chunk.data.as_str()), (3, ""));
        assert_eq!(chunk.next_offset, 3);
    }

    #[test]
    fn rotate_all_sweeps_every_server() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for name in ["a", "b"] {
            std::fs::create_dir_all(layout.server_dir(name)).unwrap();
            std::fs::write(layout.log_path(name), vec![b'x'; 64]).unwrap();
        }
        rotate_all(
            &layout,
            Rotation {
                max_bytes: 32,
                keep: 1,
            },
        );
        for name in ["a", "b"] {
            assert_eq!(std::fs::metadata(layout.log_path(name)).unwrap().len(), 0);
            assert!(rotated_path(&layout.log_path(name), 1).exists());
        }
    }

    #[test]
    fn markers_are_appended_as_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        append_marker(&log, "started pid 1");
        append_marker(&log, "exited with code 0");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "[dure-agent] started pid 1\n[dure-agent] exited with code 0\n"
        );
        let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
        writer.write_all(b"partial").unwrap();
        append_marker(&log, "exited with code 1");
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .ends_with("code 0\npartial\n[dure-agent] exited with code 1\n"));
    }
}
