//! Sealed `memfd` segments: the shared memory under rings and tables.
//!
//! # Why a memfd
//!
//! A named object in `/dev/shm` leaks when its process dies, can be opened by
//! any process with the right mode, and is not shared between containers of
//! one pod. An anonymous `memfd` has none of these problems: it lives while
//! a process holds it and reaches the sidecar only over the Unix socket
//! (`SCM_RIGHTS`).
//!
//! The creator `fallocate`s the whole size (so a write can never fault for
//! lack of memory: `ftruncate` reserves nothing) and seals it against
//! shrinking and growing. The sidecar, which maps memory a client can write,
//! checks the seals, the file system (tmpfs, not hugetlbfs) and that every
//! block is allocated before it maps: a client that truncated its segment
//! would otherwise crash the sidecar with SIGBUS.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// tmpfs' `f_type` (statfs(2)).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Why a segment could not be made or accepted.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A system call failed.
    #[error("{op}: {err}")]
    Sys {
        /// What we tried.
        op: &'static str,
        /// The error.
        err: nix::Error,
    },
    /// The segment is not sealed against shrinking and growing.
    #[error("segment not sealed against shrink and grow (seals {0:#x})")]
    NotSealed(i32),
    /// The segment is not on tmpfs.
    #[error("segment is not a tmpfs memfd (f_type {0:#x})")]
    NotTmpfs(i64),
    /// Size is not what was announced, or not allocated.
    #[error("segment size: {0}")]
    Size(String),
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> SegmentError {
    move |err| SegmentError::Sys { op, err }
}

/// A mapped segment. Unmapped on drop; the fd is kept so it can be handed
/// to the sidecar again after a reconnect.
#[derive(Debug)]
pub struct Segment {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; what is stored in it is
// accessed through atomics or under the ring protocol.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// Create, allocate, seal and map a segment of `len` bytes (a multiple
    /// of the page size).
    pub fn create(name: &str, len: usize) -> Result<Segment, SegmentError> {
        Self::make(name, len, SealFlag::F_SEAL_SEAL)
    }

    fn make(name: &str, len: usize, extra_seals: SealFlag) -> Result<Segment, SegmentError> {
        let cname = std::ffi::CString::new(name).unwrap_or_default();
        let fd = memfd_create(
            &cname,
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(sys("memfd_create"))?;
        // fallocate both sizes the file and reserves its pages: no SIGBUS on
        // first touch when memory runs short.
        nix::fcntl::fallocate(
            fd.as_raw_fd(),
            nix::fcntl::FallocateFlags::empty(),
            0,
            len as i64,
        )
        .map_err(sys("fallocate"))?;
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | extra_seals),
        )
        .map_err(sys("F_ADD_SEALS"))?;
        Self::map(fd, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)
    }

    /// Accept a segment a peer sent: check seals, file system and size
    /// (`min..=max` bytes), then map it. The peer is not trusted.
    pub fn accept(fd: OwnedFd, min: usize, max: usize) -> Result<Segment, SegmentError> {
        let size = Self::check(&fd, min, max)?;
        Self::map(fd, size, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)
    }

    /// Like [`Segment::accept`], mapped read-only (a segment the peer
    /// writes and we only read, such as the sidecar's control segment).
    pub fn accept_readonly(fd: OwnedFd, min: usize, max: usize) -> Result<Segment, SegmentError> {
        let size = Self::check(&fd, min, max)?;
        Self::map(fd, size, ProtFlags::PROT_READ)
    }

    fn check(fd: &OwnedFd, min: usize, max: usize) -> Result<usize, SegmentError> {
        let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS).map_err(sys("F_GET_SEALS"))?;
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals & need != need {
            return Err(SegmentError::NotSealed(seals));
        }
        let fs = nix::sys::statfs::fstatfs(fd.as_fd()).map_err(sys("fstatfs"))?;
        let ftype = fs.filesystem_type().0 as i64;
        if ftype != TMPFS_MAGIC {
            return Err(SegmentError::NotTmpfs(ftype));
        }
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(sys("fstat"))?;
        let size = st.st_size as usize;
        if size < min || size > max || !size.is_multiple_of(4096) {
            return Err(SegmentError::Size(format!(
                "{size} bytes, want {min}..={max}, page multiple"
            )));
        }
        if (st.st_blocks as u64) * 512 < size as u64 {
            return Err(SegmentError::Size(format!(
                "only {} of {size} bytes allocated (fallocate it)",
                st.st_blocks * 512
            )));
        }
        Ok(size)
    }

    fn map(fd: OwnedFd, len: usize, prot: ProtFlags) -> Result<Segment, SegmentError> {
        let nz =
            std::num::NonZeroUsize::new(len).ok_or_else(|| SegmentError::Size("empty".into()))?;
        // SAFETY: a fresh shared mapping of a file we hold; no existing
        // memory is affected. The pointer is valid until `munmap` in Drop.
        let ptr =
            unsafe { mmap(None, nz, prot, MapFlags::MAP_SHARED, &fd, 0) }.map_err(sys("mmap"))?;
        Ok(Segment {
            fd,
            ptr: ptr.cast(),
            len,
        })
    }

    /// Forbid new writable mappings (`F_SEAL_FUTURE_WRITE`): a peer that
    /// gets the fd can only read. Our own mapping stays writable.
    pub fn seal_future_write(&self) -> Result<(), SegmentError> {
        fcntl(
            self.fd.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(libc::F_SEAL_FUTURE_WRITE)),
        )
        .map_err(sys("F_SEAL_FUTURE_WRITE"))?;
        Ok(())
    }

    /// Create like [`Segment::create`] but leave sealing against writes
    /// possible (no `F_SEAL_SEAL`), for [`Segment::seal_future_write`].
    pub fn create_sealable(name: &str, len: usize) -> Result<Segment, SegmentError> {
        Self::make(name, len, SealFlag::empty())
    }

    /// Base address (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment is empty (never: `map` refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, to hand over a socket.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range and nobody uses it after the
        // owner drops us (users borrow the segment).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn create_and_accept() {
        let s = Segment::create("t", 8192).unwrap();
        // SAFETY: in bounds of the mapping.
        unsafe { *s.as_ptr().add(100) = 7 };
        let fd = s.fd().try_clone_to_owned().unwrap();
        let t = Segment::accept(fd, 4096, 1 << 20).unwrap();
        // SAFETY: in bounds of the mapping.
        assert_eq!(unsafe { *t.as_ptr().add(100) }, 7);
        // size out of range
        let fd = s.fd().try_clone_to_owned().unwrap();
        assert!(matches!(
            Segment::accept(fd, 16384, 1 << 20),
            Err(SegmentError::Size(_))
        ));
    }

    #[test]
    fn unsealed_is_refused() {
        let fd = memfd_create(c"x", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        assert!(matches!(
            Segment::accept(fd, 4096, 8192),
            Err(SegmentError::NotSealed(_))
        ));
    }

    #[test]
    fn unallocated_is_refused() {
        let fd = memfd_create(c"x", MemFdCreateFlag::MFD_ALLOW_SEALING).unwrap();
        nix::unistd::ftruncate(&fd, 8192).unwrap();
        fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
        )
        .unwrap();
        assert!(matches!(
            Segment::accept(fd, 4096, 8192),
            Err(SegmentError::Size(_))
        ));
    }
}
