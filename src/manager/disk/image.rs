//! Raw disk image files: sparse creation, growing, sizes, and recognising
//! the non-raw formats this tool does not read.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::Error;

/// `st_blocks` counts 512-byte units whatever the filesystem (stat(2)).
const STAT_BLOCK_SIZE: u64 = 512;

/// Container formats recognised by their header magic.
struct Magic {
    name: &'static str,
    offset: u64,
    bytes: &'static [u8],
}

/// Sources: qemu's block drivers (qcow2.c, qed.h, vmdk.c, vdi.c, vhdx.h,
/// vpc.c) and each format's specification.
const MAGICS: &[Magic] = &[
    Magic {
        name: "qcow2 (or qcow)",
        offset: 0,
        bytes: b"QFI\xfb",
    },
    Magic {
        name: "QED",
        offset: 0,
        bytes: b"QED\0",
    },
    Magic {
        name: "VMDK",
        offset: 0,
        bytes: b"KDMV",
    },
    Magic {
        name: "VMDK descriptor",
        offset: 0,
        bytes: b"# Disk DescriptorFile",
    },
    Magic {
        name: "VDI",
        offset: 64,
        bytes: &[0x7f, 0x10, 0xda, 0xbe],
    },
    Magic {
        name: "VHDX",
        offset: 0,
        bytes: b"vhdxfile",
    },
    Magic {
        name: "VHD (dynamic)",
        offset: 0,
        bytes: b"conectix",
    },
];

/// The name of the non-raw format `file` is in, if it is one.
pub fn foreign_format(file: &File) -> io::Result<Option<&'static str>> {
    let mut head = [0u8; 128];
    let n = read_up_to(file, &mut head)?;
    let head = &head[..n];
    Ok(MAGICS
        .iter()
        .find(|m| {
            let start = m.offset as usize;
            head.get(start..start + m.bytes.len()) == Some(m.bytes)
        })
        .map(|m| m.name))
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Open `path` for reading and refuse non-raw formats by name.
pub fn open_raw(path: &Path) -> Result<File, Error> {
    let file = File::open(path).map_err(|source| Error::io(path, source))?;
    if let Some(format) = foreign_format(&file).map_err(|source| Error::io(path, source))? {
        return Err(Error::NotRaw {
            path: path.to_path_buf(),
            format,
        });
    }
    Ok(file)
}

/// Create a sparse raw image of `size` bytes; refuses to overwrite.
pub fn create_sparse(path: &Path, size: u64) -> Result<(), Error> {
    if size == 0 {
        return Err(Error::ZeroSize(path.to_path_buf()));
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => Error::Exists(path.to_path_buf()),
            _ => Error::io(path, source),
        })?;
    // ftruncate(2) extends with a hole: no data block is written.
    if let Err(source) = file.set_len(size) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, source));
    }
    Ok(())
}

/// Set a raw image's size to `new_size`; shrinking (which destroys the
/// data past the new end) only with `allow_shrink`. Returns the old size.
pub fn resize(path: &Path, new_size: u64, allow_shrink: bool) -> Result<u64, Error> {
    let file = open_raw(path)?;
    drop(file);
    let old = std::fs::metadata(path)
        .map_err(|source| Error::io(path, source))?
        .len();
    if new_size < old && !allow_shrink {
        return Err(Error::Shrink {
            path: path.to_path_buf(),
            old,
            new: new_size,
        });
    }
    if new_size == 0 {
        return Err(Error::ZeroSize(path.to_path_buf()));
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| Error::io(path, source))?;
    file.set_len(new_size)
        .map_err(|source| Error::io(path, source))?;
    Ok(old)
}

/// Apparent and allocated size of an image, in bytes.
pub fn usage(path: &Path) -> Result<(u64, u64), Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::io(path, source))?;
    Ok((meta.len(), meta.blocks() * STAT_BLOCK_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_qcow2_and_vdi_but_not_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let qcow = dir.path().join("a.qcow2");
        std::fs::write(&qcow, b"QFI\xfb\0\0\0\x03rest").unwrap();
        let err = open_raw(&qcow).unwrap_err();
        assert!(err.to_string().contains("qcow2"), "{err}");
        let vdi = dir.path().join("a.vdi");
        let mut data = vec![0u8; 128];
        data[64..68].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        std::fs::write(&vdi, &data).unwrap();
        assert!(open_raw(&vdi).unwrap_err().to_string().contains("VDI"));
        let raw = dir.path().join("a.img");
        std::fs::write(&raw, [0u8; 10]).unwrap();
        assert!(open_raw(&raw).is_ok());
    }

    #[test]
    fn zero_size_and_existing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.img");
        assert!(matches!(create_sparse(&path, 0), Err(Error::ZeroSize(_))));
        assert!(!path.exists());
        create_sparse(&path, 4096).unwrap();
        assert!(matches!(create_sparse(&path, 4096), Err(Error::Exists(_))));
    }
}
