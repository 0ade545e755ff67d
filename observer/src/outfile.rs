//! Files goscope writes as root, written so that a symbolic link, FIFO or
//! device planted at the path can neither redirect nor block the write:
//! `write` replaces an output file (`-o`) through a private temporary file
//! in the same directory and a rename; `open_log` and `open_private_log`
//! open a log for appending without following links.

use std::{
    ffi::CString,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::{
            ffi::OsStrExt as _,
            fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
        },
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Mode of every file goscope creates.
const FILE_MODE: u32 = 0o600;
/// Mode of goscope's private log directory.
const DIR_MODE: u32 = 0o700;
/// Name of the private directory under $XDG_RUNTIME_DIR or /run.
const PRIVATE_DIR_NAME: &str = "goscope";
/// Where the private directory goes without $XDG_RUNTIME_DIR.
const RUN_DIR: &str = "/run";
/// Attempts at a fresh temporary name before giving up.
const TEMP_ATTEMPTS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum OutfileError {
    #[error("refusing to write {}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    #[error("refusing to use {} for goscope's log: {reason}", path.display())]
    UnsafeDirectory { path: PathBuf, reason: String },
    #[error("writing {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path, source: io::Error) -> OutfileError {
    OutfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn refused(path: &Path, reason: impl Into<String>) -> OutfileError {
    OutfileError::Refused {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn not_ours(uid: u32) -> String {
    format!(
        "it is owned by uid {uid}, not by goscope (uid {})",
        effective_uid()
    )
}

/// Writes `contents` to `path`, replacing a regular file there: refuses a
/// symbolic link or anything but a regular file at the path; writes a
/// temporary file in the same directory (O_CREAT|O_EXCL|O_NOFOLLOW, mode
/// 0600), syncs it and renames it over the path, so a reader sees the old
/// file or the whole new one.
pub fn write(path: &Path, contents: &[u8]) -> Result<(), OutfileError> {
    let Some(file_name) = path.file_name() else {
        return Err(refused(path, "it names no file"));
    };
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_file() => {
            return Err(refused(path, file_type_of(metadata.mode())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, e)),
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let (temp_path, mut temp) = create_temp(dir, file_name.as_bytes(), path)?;
    let written = temp
        .write_all(contents)
        .and_then(|()| temp.sync_all())
        .and_then(|()| fs::rename(&temp_path, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(io_error(path, e));
    }
    // The rename is durable once the directory is synced (best effort).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `path` for a file written as it goes (a trace): the same checks
/// as `write` (a link or anything but a regular file at the path is
/// refused), then a private temporary file (O_CREAT|O_EXCL|O_NOFOLLOW,
/// mode 0600) renamed over the path at once; the returned handle writes
/// that very file, whatever is planted at the path later.
pub fn create_streaming(path: &Path) -> Result<File, OutfileError> {
    let Some(file_name) = path.file_name() else {
        return Err(refused(path, "it names no file"));
    };
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_file() => {
            return Err(refused(path, file_type_of(metadata.mode())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, e)),
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let (temp_path, temp) = create_temp(dir, file_name.as_bytes(), path)?;
    if let Err(e) = fs::rename(&temp_path, path) {
        let _ = fs::remove_file(&temp_path);
        return Err(io_error(path, e));
    }
    Ok(temp)
}

/// A new file `.NAME.goscope-PID-N.tmp` in `dir`, created exclusively.
fn create_temp(dir: &Path, name: &[u8], shown: &Path) -> Result<(PathBuf, File), OutfileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Keep the temporary name within NAME_MAX whatever the target's length.
    let stem = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_path = dir.join(format!(".{stem}.goscope-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_error(shown, e)),
        }
    }
    Err(io_error(
        shown,
        last.unwrap_or_else(|| io::Error::other("no free temporary name")),
    ))
}

/// Opens a log named by the user for appending: created with
/// O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, or, when it exists, opened
/// without following a link and only if it is a regular file.
pub fn open_log(path: &Path) -> Result<File, OutfileError> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| refused(path, "the path holds a NUL byte"))?;
    open_append_at(libc::AT_FDCWD, &name, path, true)
}

/// Where goscope keeps its logs by default: $XDG_RUNTIME_DIR/goscope when
/// that variable holds an absolute path, else /run/goscope.
pub fn private_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from(RUN_DIR))
        .join(PRIVATE_DIR_NAME)
}

/// Opens `file_name` for appending in `private_dir()`, which is created
/// mode 0700 and must be a real directory owned by goscope's user (else
/// refused); the file is created O_CREAT|O_EXCL|O_NOFOLLOW mode 0600, or
/// appended to if it is a regular file owned by goscope's user. Returns
/// the file's path and the open file.
pub fn open_private_log(file_name: &str) -> Result<(PathBuf, File), OutfileError> {
    let dir_path = private_dir();
    let dir = open_private_dir(&dir_path)?;
    let path = dir_path.join(file_name);
    if file_name.contains('/') {
        return Err(refused(&path, "the name holds a '/'"));
    }
    let name = CString::new(file_name).map_err(|_| refused(&path, "the name holds a NUL byte"))?;
    let file = open_append_at(dir.as_raw_fd(), &name, &path, true)?;
    Ok((path, file))
}

/// Creates (mode 0700) or opens goscope's private directory without
/// following a link, and checks that goscope's user owns it.
fn open_private_dir(path: &Path) -> Result<File, OutfileError> {
    let unsafe_dir = |reason: String| OutfileError::UnsafeDirectory {
        path: path.to_path_buf(),
        reason,
    };
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(path, e)),
    }
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR.
            Some(libc::ELOOP | libc::ENOTDIR) => unsafe_dir(
                match fs::symlink_metadata(path) {
                    Ok(m) if m.file_type().is_symlink() => "it is a symbolic link",
                    _ => "it is not a directory",
                }
                .into(),
            ),
            _ => io_error(path, e),
        })?;
    let metadata = dir.metadata().map_err(|e| io_error(path, e))?;
    if metadata.uid() != effective_uid() {
        return Err(unsafe_dir(not_ours(metadata.uid())));
    }
    if metadata.mode() & 0o7777 != DIR_MODE {
        // Ours: make it private again.
        dir.set_permissions(fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_error(path, e))?;
    }
    Ok(dir)
}

/// The file type of `name` relative to `dirfd`, not following a link;
/// None when nothing is there.
fn lstat_at(dirfd: libc::c_int, name: &CString) -> io::Result<Option<libc::stat>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` is a valid out pointer.
    let rc = unsafe {
        libc::fstatat(
            dirfd,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        // SAFETY: fstatat filled it in.
        return Ok(Some(unsafe { st.assume_init() }));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

/// What a non-regular file is, for the refusal (from st_mode).
fn file_type_of(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "it is a symbolic link",
        libc::S_IFDIR => "it is a directory",
        libc::S_IFIFO => "it is a FIFO",
        libc::S_IFSOCK => "it is a socket",
        libc::S_IFCHR => "it is a character device",
        libc::S_IFBLK => "it is a block device",
        _ => "it is not a regular file",
    }
}

fn openat(dirfd: libc::c_int, name: &CString, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: `name` is NUL-terminated; the mode is read only with O_CREAT.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), flags, FILE_MODE as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens `name` (relative to `dirfd`) for appending: exclusive creation
/// first; an existing entry only if it is a regular file (and, with
/// `require_owner`, owned by goscope's user), never through a link, never
/// blocking on a FIFO.
fn open_append_at(
    dirfd: libc::c_int,
    name: &CString,
    shown: &Path,
    require_owner: bool,
) -> Result<File, OutfileError> {
    let base =
        libc::O_WRONLY | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY;
    match openat(dirfd, name, base | libc::O_CREAT | libc::O_EXCL) {
        Ok(file) => return Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(io_error(shown, e)),
    }
    // Someone else's file, or a hard link to another file (appending
    // would write root's log into it), is refused.
    let check = |mode: libc::mode_t, uid: u32, links: u64| {
        if mode & libc::S_IFMT != libc::S_IFREG {
            Err(refused(shown, file_type_of(mode)))
        } else if require_owner && uid != effective_uid() {
            Err(refused(shown, not_ours(uid)))
        } else if links > 1 {
            Err(refused(shown, "it has other hard links"))
        } else {
            Ok(())
        }
    };
    // Look before opening, so no device or FIFO is ever opened.
    if let Some(st) = lstat_at(dirfd, name).map_err(|e| io_error(shown, e))? {
        check(st.st_mode, st.st_uid, st.st_nlink)?;
    }
    let file =
        openat(dirfd, name, base | libc::O_NONBLOCK).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused(shown, "it is a symbolic link"),
            Some(libc::ENXIO) => refused(shown, "it is a FIFO"),
            Some(libc::EISDIR) => refused(shown, "it is a directory"),
            _ => io_error(shown, e),
        })?;
    // Whatever was swapped in between: check what was opened.
    let metadata = file.metadata().map_err(|e| io_error(shown, e))?;
    check(
        metadata.mode() as libc::mode_t,
        metadata.uid(),
        metadata.nlink(),
    )?;
    // SAFETY: fcntl on a descriptor we own; clears O_NONBLOCK again.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fresh directory for one test.
    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("goscope-outfile-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn write_creates_a_new_file_mode_0600() {
        let dir = scratch("new");
        let path = dir.join("out.pb.gz");
        write(&path, b"profile").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"profile");
        assert_eq!(mode(&path), 0o600);
        assert!(leftovers(&dir).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_replaces_an_existing_regular_file() {
        let dir = scratch("replace");
        let path = dir.join("out.svg");
        fs::write(&path, b"an older, longer document").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert!(leftovers(&dir).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_refuses_a_symlink_and_leaves_its_target_alone() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.join("out.pb.gz");
        symlink(&victim, &path).unwrap();
        let e = write(&path, b"profile").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "refusing to write {}: it is a symbolic link",
                path.display()
            )
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A dangling link is refused too (it would create its target).
        let dangling = dir.join("dangling");
        symlink(dir.join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            write(&dangling, b"x"),
            Err(OutfileError::Refused { .. })
        ));
        assert!(!dir.join("nowhere").exists());
        assert!(leftovers(&dir).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_refuses_a_fifo_without_blocking() {
        let dir = scratch("fifo");
        let path = dir.join("out.html");
        mkfifo(&path);
        let e = write(&path, b"document").unwrap_err();
        assert!(e.to_string().ends_with("it is a FIFO"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_refuses_a_directory() {
        let dir = scratch("dir");
        let path = dir.join("out.svg");
        fs::create_dir(&path).unwrap();
        let e = write(&path, b"document").unwrap_err();
        assert!(e.to_string().ends_with("it is a directory"), "{e}");
        assert!(leftovers(&dir).is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_refuses_a_path_naming_no_file() {
        for path in ["/", ".."] {
            assert!(matches!(
                write(Path::new(path), b"x"),
                Err(OutfileError::Refused { .. })
            ));
        }
    }

    #[test]
    fn open_log_creates_0600_and_appends_to_a_regular_file() {
        let dir = scratch("log");
        let path = dir.join("top.log");
        writeln!(open_log(&path).unwrap(), "one").unwrap();
        assert_eq!(mode(&path), 0o600);
        writeln!(open_log(&path).unwrap(), "two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_log_refuses_a_hard_link_to_another_file() {
        let dir = scratch("hardlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.join("top.log");
        std::fs::hard_link(&victim, &link).unwrap();
        let err = open_log(&link).unwrap_err().to_string();
        assert!(err.contains("hard links"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn open_log_refuses_a_symlink_a_fifo_and_a_directory() {
        let dir = scratch("logrefuse");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.join("link.log");
        symlink(&victim, &link).unwrap();
        let e = open_log(&link).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "refusing to write {}: it is a symbolic link",
                link.display()
            )
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let fifo = dir.join("fifo.log");
        mkfifo(&fifo);
        assert!(
            open_log(&fifo)
                .unwrap_err()
                .to_string()
                .ends_with("it is a FIFO")
        );
        let sub = dir.join("sub");
        fs::create_dir(&sub).unwrap();
        assert!(
            open_log(&sub)
                .unwrap_err()
                .to_string()
                .ends_with("it is a directory")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn open_append_at_requires_the_owner_when_asked() {
        let dir = scratch("owner");
        let path = dir.join("theirs.log");
        fs::write(&path, b"").unwrap();
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // Owned by us: accepted.
        open_append_at(libc::AT_FDCWD, &c, &path, true).unwrap();
        if effective_uid() == 0 {
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
            let e = open_append_at(libc::AT_FDCWD, &c, &path, true).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
            // An explicit --log path need not be ours.
            open_append_at(libc::AT_FDCWD, &c, &path, false).unwrap();
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn private_dir_is_created_0700_and_refused_when_a_symlink() {
        let dir = scratch("private");
        let private = dir.join("goscope");
        open_private_dir(&private).unwrap();
        assert_eq!(mode(&private), 0o700);
        // Loosened by someone: tightened again.
        fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
        open_private_dir(&private).unwrap();
        assert_eq!(mode(&private), 0o700);
        let elsewhere = dir.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let link = dir.join("link");
        symlink(&elsewhere, &link).unwrap();
        let e = open_private_dir(&link).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "refusing to use {} for goscope's log: it is a symbolic link",
                link.display()
            )
        );
        if effective_uid() == 0 {
            let c = CString::new(private.as_os_str().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
            let e = open_private_dir(&private).unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
