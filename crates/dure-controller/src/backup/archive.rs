//! The container of a domain pack: a gzip-compressed tar of regular files,
//! built and read entirely in memory (a domain's configuration is small,
//! and reading everything first is what lets a restore check the whole
//! archive before it writes anything).
//!
//! Reading refuses what a pack never holds: links, directories, absolute
//! or `..` paths, duplicate names, oversized entries, data after the end.

use super::BackupError;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Component;

/// The largest entry accepted when reading, and the largest total.
const MAX_ENTRY_BYTES: u64 = 256 << 20;
const MAX_TOTAL_BYTES: u64 = 1 << 30;

/// One file to put in an archive.
pub struct Entry {
    pub path: String,
    pub bytes: Vec<u8>,
    /// Permission bits, such as 0o644 (0o600 for secrets).
    pub mode: u32,
}

/// Builds a tar.gz of `entries`, in the given order, every entry stamped
/// with `mtime` (seconds since the epoch) and owned by root, so equal
/// contents give equal archives.
pub fn build(entries: &[Entry], mtime: u64) -> std::io::Result<Vec<u8>> {
    let encoder = GzEncoder::new(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(entry.bytes.len() as u64);
        header.set_mode(entry.mode);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, &entry.path, entry.bytes.as_slice())?;
    }
    let mut encoder = builder.into_inner()?;
    encoder.flush()?;
    encoder.finish()
}

/// Reads every entry of a tar.gz: path → bytes.
///
/// The whole gzip stream is decompressed first, so its CRC and length are
/// checked before any entry is looked at: a damaged or cut archive is
/// reported as such, not as whatever its garbage happens to look like.
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, BackupError> {
    let damaged = |e: std::io::Error| BackupError::Damaged(e.to_string());
    let mut tar_bytes = Vec::new();
    // The `bufread` decoder consumes exactly the gzip member, so whatever
    // it leaves unread was appended after the archive's end.
    let mut decoder = GzDecoder::new(bytes);
    (&mut decoder)
        .take(MAX_TOTAL_BYTES + 1)
        .read_to_end(&mut tar_bytes)
        .map_err(damaged)?;
    if tar_bytes.len() as u64 > MAX_TOTAL_BYTES {
        return Err(BackupError::Unexpected(format!(
            "it holds more than a domain pack can ({} MiB at most)",
            MAX_TOTAL_BYTES >> 20
        )));
    }
    if !decoder.into_inner().is_empty() {
        return Err(BackupError::Unexpected(
            "it has data after the end of its compressed stream".into(),
        ));
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = BTreeMap::new();
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let raw_path = entry.path().map_err(damaged)?.into_owned();
        let path = safe_path(&raw_path)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BackupError::Unexpected(format!(
                "entry `{path}` is not a regular file"
            )));
        }
        let size = entry.header().size().map_err(damaged)?;
        if size > MAX_ENTRY_BYTES {
            return Err(BackupError::Unexpected(format!(
                "entry `{path}` is larger than a domain pack entry can be ({} MiB at most)",
                MAX_ENTRY_BYTES >> 20
            )));
        }
        let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry.read_to_end(&mut content).map_err(damaged)?;
        if content.len() as u64 != size {
            return Err(BackupError::Damaged(format!("entry `{path}` is cut short")));
        }
        if entries.insert(path.clone(), content).is_some() {
            return Err(BackupError::Unexpected(format!(
                "entry `{path}` appears twice"
            )));
        }
    }
    // Past the end-of-archive marker there is only zero padding.
    if archive.into_inner().iter().any(|b| *b != 0) {
        return Err(BackupError::Unexpected(
            "it has data after the end of its tar archive".into(),
        ));
    }
    Ok(entries)
}

/// A relative path of plain names, as written with `/`.
fn safe_path(path: &std::path::Path) -> Result<String, BackupError> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(|| {
                BackupError::Unexpected(format!("entry `{}` is not UTF-8", path.display()))
            })?),
            Component::CurDir => {}
            _ => {
                return Err(BackupError::Unexpected(format!(
                    "entry `{}` is not a plain relative path",
                    path.display()
                )))
            }
        }
    }
    if parts.is_empty() {
        return Err(BackupError::Unexpected("an entry has an empty name".into()));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, bytes: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            bytes: bytes.to_vec(),
            mode: 0o644,
        }
    }

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let long = format!("config/{}/node.json", "n".repeat(120));
        let entries = [entry("manifest.json", b"{}"), entry(&long, b"x")];
        let bytes = build(&entries, 1_700_000_000).expect("build");
        assert_eq!(build(&entries, 1_700_000_000).expect("build"), bytes);
        let read = read(&bytes).expect("read");
        assert_eq!(read.len(), 2);
        assert_eq!(read[&long], b"x");
    }

    #[test]
    fn truncation_and_corruption_are_damage() {
        let bytes = build(&[entry("a", &[7u8; 4096]), entry("b", b"text")], 0).expect("build");
        for cut in [bytes.len() - 4, bytes.len() / 2, 20] {
            let read = read(&bytes[..cut]);
            assert!(
                matches!(read, Err(BackupError::Damaged(_))),
                "cut at {cut}: {read:?}"
            );
        }
        // A flipped byte anywhere after the gzip header is damage.
        for at in (10..bytes.len()).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x55;
            let read = read(&flipped);
            assert!(
                matches!(read, Err(BackupError::Damaged(_))),
                "flip at {at}: {read:?}"
            );
        }
        assert!(matches!(read(b"not gzip"), Err(BackupError::Damaged(_))));
    }

    #[test]
    fn data_after_the_end_is_refused() {
        let entries = [entry("a", b"x")];
        let mut appended = build(&entries, 0).expect("build");
        appended.extend_from_slice(b"more");
        let err = read(&appended).expect_err("data after the gzip stream");
        assert!(err.to_string().contains("after the end"), "{err}");

        // Data after the tar end-of-archive marker, inside the gzip stream.
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(build(&entries, 0).expect("build").as_slice())
            .read_to_end(&mut tar_bytes)
            .expect("gunzip");
        tar_bytes.extend_from_slice(&[7u8; 512]);
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&tar_bytes).expect("gzip");
        let err = read(&encoder.finish().expect("gzip")).expect_err("data after the tar end");
        assert!(err.to_string().contains("after the end"), "{err}");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["../etc/passwd", "/etc/passwd"] {
            let mut header = tar::Header::new_gnu();
            header.set_size(1);
            header.set_entry_type(tar::EntryType::Regular);
            // `append_data` refuses such names, so write the name raw.
            let name = &mut header.as_old_mut().name;
            name[..bad.len()].copy_from_slice(bad.as_bytes());
            header.set_cksum();
            let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
            builder.append(&header, &b"x"[..]).expect("append");
            let bytes = builder
                .into_inner()
                .and_then(|e| e.finish())
                .expect("finish");
            let err = read(&bytes).expect_err(bad);
            assert!(
                err.to_string().contains("plain relative path"),
                "{bad}: {err}"
            );
        }
    }
}
