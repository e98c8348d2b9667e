//! `--output FILE`: JSON Lines appended to a file, with size rotation and
//! reopening on SIGHUP.
//!
//! Records are buffered as whole lines and written with one `write` call per
//! batch on a file opened with `O_APPEND`, so a reader never sees a record
//! split by another write. A batch goes out when the stream has been idle for
//! 100 ms, when its oldest line is 1 s old, when it reaches 64 KiB, before a
//! rotation or reopening, and at exit. If a write fails half-way (a full
//! disk), the file is cut back to where the batch began, so no torn line is
//! left behind, and the batch's records are counted as unwritten.
//!
//! Rotation happens between two records: the batch so far is written to the
//! old file, the files are renamed (`FILE.1` → `FILE.2`, …, `FILE` →
//! `FILE.1`) and the next record starts the new `FILE`. No record is written
//! twice or skipped.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procexit::schema::Message;

use super::{Health, Sink};

/// A batch is written when it reaches this size.
const BATCH_BYTES: usize = 64 * 1024;
/// … or when no record came for this long.
const IDLE: Duration = Duration::from_millis(100);
/// … or when its oldest record is this old.
const MAX_AGE: Duration = Duration::from_secs(1);
/// With nothing buffered, how often to look at the reopen request.
const POLL: Duration = Duration::from_millis(250);

/// Size rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a record would make the file larger than this.
    pub max_bytes: u64,
    /// Rotated files kept (`FILE.1` … `FILE.N`); 0 keeps none.
    pub keep: u32,
}

/// JSON Lines appended to one file.
pub struct FileSink {
    path: PathBuf,
    describe: String,
    file: Option<File>,
    /// Bytes in the current file, as far as this process wrote them.
    size: u64,
    buffer: Vec<u8>,
    buffered_records: u64,
    oldest: Option<Instant>,
    rotation: Option<Rotation>,
    reopen: Arc<AtomicBool>,
    health: Health,
}

impl FileSink {
    /// Opens (creates) `path` for appending. `reopen` is set by the SIGHUP
    /// handler: the sink then writes what it holds and opens `path` afresh.
    pub fn open(
        path: &Path,
        rotation: Option<Rotation>,
        reopen: Arc<AtomicBool>,
    ) -> anyhow::Result<FileSink> {
        let file = open_append(path).map_err(|e| open_error(path, &e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(FileSink {
            path: path.to_path_buf(),
            describe: format!("output file {}", path.display()),
            file: Some(file),
            size,
            buffer: Vec::with_capacity(BATCH_BYTES),
            buffered_records: 0,
            oldest: None,
            rotation,
            reopen,
            health: Health::default(),
        })
    }

    /// Writes the batch as one `write` call (whole lines only).
    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.buffered_records);
        self.oldest = None;
        let result = self.write_batch();
        self.buffer.clear();
        match result {
            Ok(()) => self.health.delivered(&self.describe, records),
            Err(error) => {
                // Open afresh next time: the descriptor may be what failed.
                self.file = None;
                self.health.failed(&self.describe, records, &error);
            }
        }
    }

    fn write_batch(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            unreachable!("opened above")
        };
        let before = file.metadata()?.len();
        match file.write_all(&self.buffer) {
            Ok(()) => {
                self.size = before + self.buffer.len() as u64;
                Ok(())
            }
            Err(error) => {
                // A short write left part of a line: cut it off, so that
                // the file holds whole records only.
                let _ = file.set_len(before);
                Err(error)
            }
        }
    }

    fn reopen_if_asked(&mut self) {
        if self.reopen.swap(false, Ordering::Relaxed) {
            self.flush();
            self.file = None;
            match open_append(&self.path) {
                Ok(file) => {
                    self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    self.file = Some(file);
                }
                // Retried with the next batch, which counts its records if
                // it fails again.
                Err(error) => eprintln!("procexit: {}: reopen: {error}", self.describe),
            }
        }
    }

    /// Renames FILE → FILE.1 (shifting older ones) and starts a new FILE.
    fn rotate(&mut self, keep: u32) {
        self.file = None;
        let result = if keep == 0 {
            remove_if_present(&self.path)
        } else {
            shift_rotated(&self.path, keep)
        };
        if let Err(error) = result {
            eprintln!(
                "procexit: {}: rotation failed ({error}); writing on to the same file",
                self.describe
            );
        }
        // A failed rotation is not retried before another full file.
        self.size = 0;
        match open_append(&self.path) {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
            }
            Err(error) => eprintln!("procexit: {}: {error}", self.describe),
        }
    }
}

impl Sink for FileSink {
    fn describe(&self) -> &str {
        &self.describe
    }

    fn send(&mut self, message: &Message<'_>) {
        self.reopen_if_asked();
        let line = crate::json::line(message);
        let line_len = line.len() as u64 + 1;
        if let Some(rotation) = self.rotation {
            let pending = self.size + self.buffer.len() as u64;
            if pending > 0 && pending + line_len > rotation.max_bytes {
                self.flush();
                self.rotate(rotation.keep);
            }
        }
        self.buffer.extend_from_slice(&line);
        self.buffer.push(b'\n');
        self.buffered_records += 1;
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        if self.buffer.len() >= BATCH_BYTES || oldest.elapsed() >= MAX_AGE {
            self.flush();
        }
    }

    fn idle(&mut self) {
        self.reopen_if_asked();
        self.flush();
    }

    fn idle_after(&self) -> Duration {
        if self.buffer.is_empty() {
            POLL
        } else {
            IDLE
        }
    }

    fn finish(&mut self) {
        self.flush();
        if let Some(file) = &self.file {
            if let Err(error) = file.sync_data() {
                eprintln!("procexit: {}: sync: {error}", self.describe);
            }
        }
    }

    fn health(&self) -> &Health {
        &self.health
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

fn open_error(path: &Path, error: &io::Error) -> anyhow::Error {
    let hint = match error.kind() {
        io::ErrorKind::NotFound => "; create its directory first",
        io::ErrorKind::PermissionDenied => {
            "; choose a path this user may write, or run as a user who may"
        }
        _ => "",
    };
    anyhow::anyhow!(
        "cannot open the output file {} for appending: {error}{hint}",
        path.display()
    )
}

/// `FILE.N` for a rotated file.
pub fn rotated_name(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn shift_rotated(path: &Path, keep: u32) -> io::Result<()> {
    remove_if_present(&rotated_name(path, keep))?;
    for n in (1..keep).rev() {
        match std::fs::rename(rotated_name(path, n), rotated_name(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, rotated_name(path, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("procexit-file-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn send(sink: &mut FileSink, pid: u32) {
        let exit = procexit::ProcessExit::new(
            pid,
            procexit::ExitStatus::Code(0),
            procexit::Source::LinuxConnector,
        );
        sink.send(&Message::Exit(&exit));
    }

    fn pids(path: &Path) -> Vec<u32> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                value["pid"].as_u64().unwrap() as u32
            })
            .collect()
    }

    #[test]
    fn rotation_keeps_every_record_once_and_in_order() {
        let dir = temp_dir("rotate");
        let path = dir.join("exits.jsonl");
        let rotation = Rotation {
            max_bytes: 4000,
            keep: 1000,
        };
        let mut sink = FileSink::open(&path, Some(rotation), Arc::default()).unwrap();
        for n in 0..2000 {
            send(&mut sink, n);
        }
        sink.finish();
        let mut files = vec![];
        let mut n = 1;
        while rotated_name(&path, n).exists() {
            files.push(rotated_name(&path, n));
            n += 1;
        }
        assert!(files.len() > 50, "only {} rotations", files.len());
        let mut all = vec![];
        for file in files.iter().rev() {
            assert!(std::fs::metadata(file).unwrap().len() <= 4000);
            all.extend(pids(file));
        }
        all.extend(pids(&path));
        assert_eq!(all, (0..2000).collect::<Vec<_>>());
        assert_eq!(sink.health().written, 2000);
        assert_eq!(sink.health().unwritten, 0);
    }

    #[test]
    fn keep_limits_the_rotated_files() {
        let dir = temp_dir("keep");
        let path = dir.join("exits.jsonl");
        let rotation = Rotation {
            max_bytes: 1500,
            keep: 2,
        };
        let mut sink = FileSink::open(&path, Some(rotation), Arc::default()).unwrap();
        for n in 0..100 {
            send(&mut sink, n);
        }
        sink.finish();
        assert!(rotated_name(&path, 1).exists());
        assert!(rotated_name(&path, 2).exists());
        assert!(!rotated_name(&path, 3).exists());
        // The newest records are in FILE, the ones before in FILE.1.
        let mut tail = pids(&rotated_name(&path, 2));
        tail.extend(pids(&rotated_name(&path, 1)));
        tail.extend(pids(&path));
        assert_eq!(*tail.last().unwrap(), 99);
        assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{tail:?}");
    }

    #[test]
    fn reopen_request_moves_on_to_a_new_file() {
        let dir = temp_dir("reopen");
        let path = dir.join("exits.jsonl");
        let reopen = Arc::new(AtomicBool::new(false));
        let mut sink = FileSink::open(&path, None, reopen.clone()).unwrap();
        send(&mut sink, 1);
        send(&mut sink, 2);
        // What logrotate does without copytruncate: rename, then SIGHUP.
        std::fs::rename(&path, dir.join("exits.jsonl.old")).unwrap();
        reopen.store(true, Ordering::Relaxed);
        send(&mut sink, 3);
        sink.finish();
        assert_eq!(pids(&dir.join("exits.jsonl.old")), [1, 2]);
        assert_eq!(pids(&path), [3]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn full_device_counts_unwritten_records() {
        let reopen = Arc::default();
        let mut sink = FileSink::open(Path::new("/dev/full"), None, reopen).unwrap();
        for n in 0..10 {
            send(&mut sink, n);
        }
        sink.finish();
        assert_eq!(sink.health().written, 0);
        assert_eq!(sink.health().unwritten, 10);
        let error = sink.health().last_error.clone().unwrap();
        assert!(error.contains("No space left on device"), "{error}");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = temp_dir("missing");
        let error = FileSink::open(&dir.join("no/such/dir/x.jsonl"), None, Arc::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("cannot open the output file"), "{error}");
        assert!(error.contains("create its directory first"), "{error}");
    }
}
