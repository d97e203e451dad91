//! System Use Sharing Protocol entries and the Rock Ridge ones the reader
//! needs: NM (alternate name), SL (symbolic link), RE and CL (relocated
//! directories), followed through CE continuation areas.
//!
//! Spec: IEEE P1281 SUSP 1.12 §5, IEEE P1282 RRIP 1.12 §4.1.

use super::reader::ReadError;

/// SUSP §4.1: every entry starts with a 2-byte signature, a length and a version.
const HEADER_LEN: usize = 4;
/// SUSP §5.3: the SP entry's check bytes.
const SP_CHECK: [u8; 2] = [0xBE, 0xEF];
/// RRIP §4.1.4 NM flags.
const NM_CONTINUE: u8 = 1 << 0;
const NM_CURRENT: u8 = 1 << 1;
const NM_PARENT: u8 = 1 << 2;
/// RRIP §4.1.3.1 SL component flags.
const SL_CONTINUE: u8 = 1 << 0;
const SL_CURRENT: u8 = 1 << 1;
const SL_PARENT: u8 = 1 << 2;
const SL_ROOT: u8 = 1 << 3;
/// Continuation areas one record may chain through.
const MAX_CONTINUATIONS: usize = 16;
/// Longest name or link target accepted (Linux PATH_MAX).
const MAX_TEXT: usize = 4096;

/// What the root's "." record says about SUSP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuspInfo {
    /// Bytes to skip at the start of every system use area (SP's LEN_SKP).
    pub skip: u8,
}

/// Rock Ridge facts of one directory record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RockRidge {
    pub name: Option<String>,
    pub symlink: Option<String>,
    pub relocated: bool,
    /// RRIP §4.1.5.1: this entry stands for the directory at this block.
    pub child_link: Option<u64>,
}

pub enum ParseError {
    Corrupt(String),
    Read(ReadError),
}

/// SUSP §5.3: an SP entry first in the root "." record marks SUSP use.
pub fn detect(area: &[u8]) -> Option<SuspInfo> {
    let entry = area.get(..7)?;
    (&entry[..2] == b"SP" && usize::from(entry[2]) >= 7 && entry[4..6] == SP_CHECK)
        .then_some(SuspInfo { skip: entry[6] })
}

/// Reads `buf.len()` bytes of the image at an offset.
pub type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), ReadError> + 'a;

/// Parse a system use area, reading CE continuation areas through
/// `read_at(offset, buf)`.
pub fn parse(
    area: &[u8],
    block_size: u64,
    read_at: &mut ReadAt<'_>,
) -> Result<RockRidge, ParseError> {
    let mut rr = RockRidge::default();
    let mut name = Vec::new();
    let mut name_done = false;
    let mut link: Vec<String> = Vec::new();
    let mut link_part = Vec::new();
    let mut is_link = false;
    let mut current = area.to_vec();
    let mut continuations = 0;
    loop {
        let mut next = None;
        let mut at = 0usize;
        while at + HEADER_LEN <= current.len() {
            let sig = [current[at], current[at + 1]];
            let len = usize::from(current[at + 2]);
            if len < HEADER_LEN || at + len > current.len() {
                // Padding or garbage after the last entry ends the area.
                break;
            }
            let data = &current[at + HEADER_LEN..at + len];
            at += len;
            match &sig {
                b"ST" => break,
                b"CE" if data.len() >= 24 => {
                    let block = u64::from(le32(data, 0));
                    let offset = u64::from(le32(data, 8));
                    let length = u64::from(le32(data, 16));
                    if offset >= block_size || length > block_size - offset {
                        return Err(ParseError::Corrupt(format!(
                            "continuation area of {length} bytes at offset {offset}"
                        )));
                    }
                    next = Some((block * block_size + offset, length as usize));
                }
                b"NM" if !data.is_empty() && !name_done => {
                    let flags = data[0];
                    if flags & (NM_CURRENT | NM_PARENT) == 0 {
                        name.extend_from_slice(&data[1..]);
                    }
                    name_done = flags & NM_CONTINUE == 0;
                    if name.len() > MAX_TEXT {
                        return Err(ParseError::Corrupt("NM name too long".into()));
                    }
                }
                b"SL" if !data.is_empty() => {
                    is_link = true;
                    parse_sl(&data[1..], &mut link, &mut link_part)?;
                }
                b"RE" => rr.relocated = true,
                b"CL" if data.len() >= 8 => rr.child_link = Some(u64::from(le32(data, 0))),
                _ => {}
            }
        }
        let Some((offset, length)) = next else { break };
        continuations += 1;
        if continuations > MAX_CONTINUATIONS {
            return Err(ParseError::Corrupt("too many continuation areas".into()));
        }
        current = vec![0u8; length];
        read_at(offset, &mut current).map_err(ParseError::Read)?;
    }
    if !name.is_empty() {
        rr.name = Some(String::from_utf8_lossy(&name).into_owned());
    }
    if is_link {
        if !link_part.is_empty() {
            link.push(String::from_utf8_lossy(&link_part).into_owned());
        }
        let target = if link.first().is_some_and(|c| c.is_empty()) {
            format!("/{}", link[1..].join("/"))
        } else {
            link.join("/")
        };
        if target.len() > MAX_TEXT {
            return Err(ParseError::Corrupt("SL target too long".into()));
        }
        rr.symlink = Some(target);
    }
    Ok(rr)
}

/// RRIP §4.1.3.1: component records, each flags, length, content; a
/// component with CONTINUE goes on in the next record.
fn parse_sl(mut data: &[u8], link: &mut Vec<String>, part: &mut Vec<u8>) -> Result<(), ParseError> {
    while data.len() >= 2 {
        let flags = data[0];
        let len = usize::from(data[1]);
        let content = data
            .get(2..2 + len)
            .ok_or_else(|| ParseError::Corrupt("SL component overflows its entry".into()))?;
        data = &data[2 + len..];
        if flags & SL_ROOT != 0 {
            link.clear();
            link.push(String::new());
            continue;
        }
        if flags & SL_CURRENT != 0 {
            part.extend_from_slice(b".");
        } else if flags & SL_PARENT != 0 {
            part.extend_from_slice(b"..");
        } else {
            part.extend_from_slice(content);
        }
        if part.len() > MAX_TEXT || link.len() > MAX_TEXT {
            return Err(ParseError::Corrupt("SL target too long".into()));
        }
        if flags & SL_CONTINUE == 0 {
            link.push(String::from_utf8_lossy(part).into_owned());
            part.clear();
        }
    }
    Ok(())
}

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sig: &[u8; 2], data: &[u8]) -> Vec<u8> {
        let mut e = vec![sig[0], sig[1], (HEADER_LEN + data.len()) as u8, 1];
        e.extend_from_slice(data);
        e
    }

    fn no_reads(_: u64, _: &mut [u8]) -> Result<(), ReadError> {
        panic!("no continuation expected")
    }

    fn parsed(area: &[u8]) -> RockRidge {
        match parse(area, 2048, &mut no_reads) {
            Ok(rr) => rr,
            Err(_) => panic!("parse failed"),
        }
    }

    #[test]
    fn nm_pieces_join() {
        let mut area = entry(b"NM", b"\x01initramfs-");
        area.extend(entry(b"NM", b"\x00linux.img"));
        assert_eq!(parsed(&area).name.as_deref(), Some("initramfs-linux.img"));
    }

    #[test]
    fn sl_builds_absolute_and_relative_targets() {
        let area = entry(b"SL", b"\x00\x08\x00\x00\x04boot\x00\x07vmlinuz");
        assert_eq!(parsed(&area).symlink.as_deref(), Some("/boot/vmlinuz"));
        let area = entry(b"SL", b"\x00\x04\x00\x00\x04arch");
        assert_eq!(parsed(&area).symlink.as_deref(), Some("../arch"));
        let area = entry(b"SL", b"\x00\x02\x00");
        assert_eq!(parsed(&area).symlink.as_deref(), Some("."));
    }

    #[test]
    fn ce_outside_its_block_is_corrupt() {
        let mut ce = vec![0u8; 24];
        ce[8..12].copy_from_slice(&4000u32.to_le_bytes());
        ce[16..20].copy_from_slice(&100u32.to_le_bytes());
        let area = entry(b"CE", &ce);
        assert!(matches!(
            parse(&area, 2048, &mut no_reads),
            Err(ParseError::Corrupt(_))
        ));
    }

    #[test]
    fn sp_detection_needs_the_check_bytes() {
        assert_eq!(
            detect(&entry(b"SP", b"\xBE\xEF\x00")),
            Some(SuspInfo { skip: 0 })
        );
        assert_eq!(detect(&entry(b"SP", b"\xBE\xEE\x00")), None);
        assert_eq!(detect(b"SP"), None);
    }
}
