//! Looking for plaintext on the disk: in the files under a directory, and
//! in the files this process holds open while something runs — unlinked
//! temporary files included, which no directory listing shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The needles `bytes` holds.
pub fn held<'a>(bytes: &[u8], needles: &[&'a str]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|needle| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .copied()
        .collect()
}

/// Each file under `dir` that holds any of `needles`, with the ones it
/// holds.
pub fn files_holding(dir: &Path, needles: &[&str]) -> Vec<(PathBuf, Vec<String>)> {
    files_under(dir)
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            let found = held(&bytes, needles);
            (!found.is_empty()).then(|| (path, found.iter().map(|s| s.to_string()).collect()))
        })
        .collect()
}

/// A watch, on a thread of its own, over the unlinked files this process
/// holds open (Linux: `/proc/self/fd`), for any that holds a needle: where
/// a plaintext temporary file would be, since it is unlinked at once and
/// no scan of a directory finds it. It looks again and again until
/// stopped; a file opened and closed between two looks goes unseen, so
/// give it something that takes a while, and pair it with
/// [`files_holding`].
pub struct OpenFileWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Watched>,
}

/// What a watch saw.
#[derive(Debug, Default)]
pub struct Watched {
    /// How many times it looked at every open file.
    pub looks: u64,
    /// Each open file that held a needle (its link, such as
    /// `/tmp/#1234 (deleted)`), with the needles.
    pub found: Vec<(String, Vec<String>)>,
}

impl OpenFileWatch {
    /// Start watching for `needles`.
    pub fn start(needles: &[&str]) -> OpenFileWatch {
        let needles: Vec<String> = needles.iter().map(|s| s.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            let mut watched = Watched::default();
            while !stopping.load(Ordering::Relaxed) {
                look(&needles, &mut watched);
            }
            // One last look: whatever is still open now.
            look(&needles, &mut watched);
            watched
        });
        OpenFileWatch { stop, thread }
    }

    /// Stop, and say what was seen.
    pub fn stop(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the watch's thread")
    }
}

/// The unlinked regular files this process has open, at most 256 MiB each
/// (no temporary answer is larger in a test).
fn look(needles: &[&str], watched: &mut Watched) {
    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for descriptor in descriptors.flatten() {
        let path = descriptor.path();
        let Ok(target) = std::fs::read_link(&path) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if !target.ends_with(" (deleted)") {
            continue;
        }
        let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() < 256 << 20);
        // Opened anew through the descriptor: its own offset, from the start.
        let Some(bytes) = regular.then(|| std::fs::read(&path).ok()).flatten() else {
            continue;
        };
        let found = held(&bytes, needles);
        if !found.is_empty() && !watched.found.iter().any(|(seen, _)| *seen == target) {
            watched
                .found
                .push((target, found.iter().map(|s| s.to_string()).collect()));
        }
    }
    watched.looks += 1;
}
