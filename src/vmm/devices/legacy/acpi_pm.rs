//! ACPI fixed hardware (ACPI 6.5 §4.8): the PM1a event block (PM1 status
//! and enable), the PM1a control block and the PM timer.
//!
//! The platform is always in ACPI mode (FADT SMI_CMD = 0), so SCI_EN reads
//! as 1. Writing SLP_EN with SLP_TYP = [`SLP_TYP_S5`] powers the VM off; the
//! DSDT's `\_S5` object advertises the same value. The power button is the
//! fixed-feature one: [`AcpiPm::press_power_button`] sets PWRBTN_STS and
//! raises the SCI while PWRBTN_EN is set. The SCI is an edge on an irqfd, so
//! it is raised whenever an enabled status bit becomes pending (a press, or
//! the guest enabling a bit whose status is already set).

use std::time::Instant;

use crossbeam_channel::Sender;
use vmm_sys_util::eventfd::EventFd;

use super::{raise_irq, send_event};
use crate::vmm::devices::{BusDevice, VmEvent};
use crate::vmm::layout::{
    ACPI_PM_TMR_LEN, ACPI_PM_TMR_PORT, ACPI_PM1_CNT_LEN, ACPI_PM1_EVT_LEN, ACPI_PM1A_CNT_PORT,
    ACPI_PM1A_EVT_PORT,
};

/// SLP_TYP value that means S5 (soft off) on this platform. The DSDT's
/// `\_S5` package carries it; it is ours to choose (ACPI 6.5 §7.4.2).
pub const SLP_TYP_S5: u8 = 5;
/// The PM timer counts at 3.579545 MHz (ACPI 6.5 §4.8.3.3).
pub const PM_TIMER_FREQUENCY_HZ: u64 = 3_579_545;
/// The PM timer is 32 bits wide (FADT flag TMR_VAL_EXT).
pub const PM_TIMER_IS_32_BIT: bool = true;
const PM_TIMER_MASK: u64 = if PM_TIMER_IS_32_BIT {
    0xffff_ffff
} else {
    0x00ff_ffff
};
const NANOS_PER_SEC: u128 = 1_000_000_000;

// PM1 status / enable bits (ACPI 6.5 tables 4.16 and 4.17).
/// Power button pressed.
const PM1_PWRBTN: u16 = 1 << 8;
/// Status bits this platform can set.
const PM1_STS_IMPLEMENTED: u16 = PM1_PWRBTN;
/// PM1 enable bits the guest may set: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN,
/// RTC_EN (the others are reserved).
const PM1_EN_WRITABLE: u16 = (1 << 0) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 10);

// PM1 control bits (ACPI 6.5 table 4.18).
/// SCI_EN: the platform generates SCIs (not SMIs) for power events.
const PM1_CNT_SCI_EN: u16 = 1 << 0;
const PM1_CNT_SLP_TYP_SHIFT: u16 = 10;
const PM1_CNT_SLP_TYP_MASK: u16 = 0x7 << PM1_CNT_SLP_TYP_SHIFT;
/// SLP_EN: enter the sleep state in SLP_TYP (write-only, reads as 0).
const PM1_CNT_SLP_EN: u16 = 1 << 13;

/// Byte offsets of the registers inside their blocks.
const PM1_STS_OFFSET: u64 = 0;
const PM1_EN_OFFSET: u64 = 2;

/// ACPI fixed hardware: PM1a event block, PM1a control (S5 -> PowerOff),
/// PM timer. Insert it once per block (`base` tells which).
pub struct AcpiPm {
    events: Sender<VmEvent>,
    sci: EventFd,
    pm1_sts: u16,
    pm1_en: u16,
    /// PM1 control as last written, without the write-only SLP_EN bit.
    pm1_cnt: u16,
    timer_start: Instant,
}

/// Which register a port address falls in, and the byte within it.
enum Register {
    Pm1Status(u64),
    Pm1Enable(u64),
    Pm1Control(u64),
    Timer(u64),
    Unknown,
}

fn register_at(port: u64) -> Register {
    let evt = u64::from(ACPI_PM1A_EVT_PORT);
    let cnt = u64::from(ACPI_PM1A_CNT_PORT);
    let tmr = u64::from(ACPI_PM_TMR_PORT);
    match port {
        p if (evt + PM1_STS_OFFSET..evt + PM1_EN_OFFSET).contains(&p) => {
            Register::Pm1Status(p - evt - PM1_STS_OFFSET)
        }
        p if (evt + PM1_EN_OFFSET..evt + u64::from(ACPI_PM1_EVT_LEN)).contains(&p) => {
            Register::Pm1Enable(p - evt - PM1_EN_OFFSET)
        }
        p if (cnt..cnt + u64::from(ACPI_PM1_CNT_LEN)).contains(&p) => Register::Pm1Control(p - cnt),
        p if (tmr..tmr + u64::from(ACPI_PM_TMR_LEN)).contains(&p) => Register::Timer(p - tmr),
        _ => Register::Unknown,
    }
}

/// Byte `index` of a little-endian register value.
fn byte_of(value: u64, index: u64) -> u8 {
    (value >> (8 * index)) as u8
}

/// `value` with byte `index` replaced by `byte`.
fn with_byte(value: u16, index: u64, byte: u8) -> u16 {
    let shift = 8 * index;
    (value & !(0xff << shift)) | (u16::from(byte) << shift)
}

impl AcpiPm {
    pub fn new(events: Sender<VmEvent>, sci: EventFd) -> Self {
        AcpiPm {
            events,
            sci,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: PM1_CNT_SCI_EN,
            timer_start: Instant::now(),
        }
    }

    /// Set PWRBTN_STS and raise the SCI if the guest enabled it.
    pub fn press_power_button(&mut self) {
        self.pm1_sts |= PM1_PWRBTN;
        if self.pm1_en & PM1_PWRBTN != 0 {
            raise_irq(&self.sci, "acpi-pm");
        }
    }

    fn timer(&self) -> u64 {
        let nanos = self.timer_start.elapsed().as_nanos();
        let ticks = nanos * u128::from(PM_TIMER_FREQUENCY_HZ) / NANOS_PER_SEC;
        (ticks as u64) & PM_TIMER_MASK
    }

    fn read_byte(&self, port: u64) -> u8 {
        match register_at(port) {
            Register::Pm1Status(i) => byte_of(self.pm1_sts.into(), i),
            Register::Pm1Enable(i) => byte_of(self.pm1_en.into(), i),
            Register::Pm1Control(i) => byte_of((self.pm1_cnt | PM1_CNT_SCI_EN).into(), i),
            Register::Timer(i) => byte_of(self.timer(), i),
            Register::Unknown => 0,
        }
    }

    fn write_byte(&mut self, port: u64, byte: u8) {
        match register_at(port) {
            // Write 1 to clear.
            Register::Pm1Status(i) => self.pm1_sts &= !with_byte(0, i, byte),
            Register::Pm1Enable(i) => {
                let before = self.pm1_en;
                self.pm1_en = with_byte(self.pm1_en, i, byte) & PM1_EN_WRITABLE;
                let newly_enabled = self.pm1_en & !before;
                if newly_enabled & self.pm1_sts & PM1_STS_IMPLEMENTED != 0 {
                    raise_irq(&self.sci, "acpi-pm");
                }
            }
            Register::Pm1Control(i) => {
                let value = with_byte(self.pm1_cnt, i, byte);
                self.pm1_cnt = value & !PM1_CNT_SLP_EN;
                if value & PM1_CNT_SLP_EN != 0 {
                    self.sleep(value);
                }
            }
            // The timer is read-only.
            Register::Timer(_) | Register::Unknown => {}
        }
    }

    fn sleep(&self, pm1_cnt: u16) {
        let slp_typ = ((pm1_cnt & PM1_CNT_SLP_TYP_MASK) >> PM1_CNT_SLP_TYP_SHIFT) as u8;
        if slp_typ == SLP_TYP_S5 {
            send_event(&self.events, VmEvent::PowerOff, "acpi-pm");
        } else {
            log::warn!("acpi-pm: ignoring SLP_EN with unsupported SLP_TYP {slp_typ}");
        }
    }
}

impl BusDevice for AcpiPm {
    /// Accesses of any width are served byte by byte from the absolute port,
    /// so the device works whether it is inserted once per block or once for
    /// the whole range.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = base + offset;
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.read_byte(port + i as u64);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        // SLP_TYP and SLP_EN share the high byte of PM1 control, so byte-wise
        // handling sees them together whatever the access width.
        let port = base + offset;
        for (i, byte) in data.iter().enumerate() {
            self.write_byte(port + i as u64, *byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, unbounded};

    const EVT: u64 = ACPI_PM1A_EVT_PORT as u64;
    const CNT: u64 = ACPI_PM1A_CNT_PORT as u64;
    const TMR: u64 = ACPI_PM_TMR_PORT as u64;

    fn device() -> (AcpiPm, Receiver<VmEvent>, EventFd) {
        let (tx, rx) = unbounded();
        let sci = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (AcpiPm::new(tx, sci.try_clone().unwrap()), rx, sci)
    }

    fn read16(dev: &mut AcpiPm, base: u64, offset: u64) -> u16 {
        let mut b = [0u8; 2];
        dev.read(base, offset, &mut b);
        u16::from_le_bytes(b)
    }

    fn read32(dev: &mut AcpiPm, base: u64, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        dev.read(base, offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn s5_with_slp_en() -> u16 {
        (u16::from(SLP_TYP_S5) << PM1_CNT_SLP_TYP_SHIFT) | PM1_CNT_SLP_EN
    }

    #[test]
    fn sci_en_always_reads_as_set() {
        let (mut dev, _rx, _sci) = device();
        assert_eq!(read16(&mut dev, CNT, 0) & PM1_CNT_SCI_EN, PM1_CNT_SCI_EN);
        dev.write(CNT, 0, &0u16.to_le_bytes());
        assert_eq!(read16(&mut dev, CNT, 0), PM1_CNT_SCI_EN);
    }

    #[test]
    fn s5_with_slp_en_powers_off() {
        let (mut dev, rx, _sci) = device();
        // Linux first writes SLP_TYP alone, then with SLP_EN.
        let typ = u16::from(SLP_TYP_S5) << PM1_CNT_SLP_TYP_SHIFT;
        dev.write(CNT, 0, &typ.to_le_bytes());
        assert!(rx.try_recv().is_err());
        dev.write(CNT, 0, &s5_with_slp_en().to_le_bytes());
        assert_eq!(rx.try_recv(), Ok(VmEvent::PowerOff));
        // SLP_EN is write-only.
        assert_eq!(read16(&mut dev, CNT, 0) & PM1_CNT_SLP_EN, 0);
    }

    #[test]
    fn s5_through_byte_writes_and_a_single_range_insert() {
        let (mut dev, rx, _sci) = device();
        // Inserted once at the event block base, covering all three blocks.
        let [lo, hi] = s5_with_slp_en().to_le_bytes();
        dev.write(EVT, CNT - EVT, &[lo]);
        dev.write(EVT, CNT - EVT + 1, &[hi]);
        assert_eq!(rx.try_recv(), Ok(VmEvent::PowerOff));
    }

    #[test]
    fn other_sleep_types_are_ignored() {
        let (mut dev, rx, _sci) = device();
        for typ in (0u16..8).filter(|t| *t != u16::from(SLP_TYP_S5)) {
            let v = (typ << PM1_CNT_SLP_TYP_SHIFT) | PM1_CNT_SLP_EN;
            dev.write(CNT, 0, &v.to_le_bytes());
        }
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn power_button_with_enable_raises_the_sci() {
        let (mut dev, _rx, sci) = device();
        dev.write(EVT, PM1_EN_OFFSET, &PM1_PWRBTN.to_le_bytes());
        assert_eq!(read16(&mut dev, EVT, PM1_EN_OFFSET), PM1_PWRBTN);
        dev.press_power_button();
        assert_eq!(sci.read().unwrap(), 1);
        assert_eq!(read16(&mut dev, EVT, PM1_STS_OFFSET), PM1_PWRBTN);
        // Write 1 to clear.
        dev.write(EVT, PM1_STS_OFFSET, &PM1_PWRBTN.to_le_bytes());
        assert_eq!(read16(&mut dev, EVT, PM1_STS_OFFSET), 0);
    }

    #[test]
    fn pending_power_button_fires_when_enabled_later() {
        let (mut dev, _rx, sci) = device();
        dev.press_power_button();
        assert!(sci.read().is_err(), "PWRBTN_EN is off: no SCI yet");
        assert_eq!(read32(&mut dev, EVT, 0), u32::from(PM1_PWRBTN));
        dev.write(EVT, PM1_EN_OFFSET, &PM1_PWRBTN.to_le_bytes());
        assert_eq!(sci.read().unwrap(), 1);
        // Re-writing the same enable value is not a new event.
        dev.write(EVT, PM1_EN_OFFSET, &PM1_PWRBTN.to_le_bytes());
        assert!(sci.read().is_err());
    }

    #[test]
    fn writing_zero_to_status_clears_nothing_and_reserved_enables_stay_clear() {
        let (mut dev, _rx, _sci) = device();
        dev.press_power_button();
        dev.write(EVT, PM1_STS_OFFSET, &[0, 0]);
        assert_eq!(read16(&mut dev, EVT, PM1_STS_OFFSET), PM1_PWRBTN);
        dev.write(EVT, PM1_EN_OFFSET, &[0xff, 0xff]);
        assert_eq!(read16(&mut dev, EVT, PM1_EN_OFFSET), PM1_EN_WRITABLE);
    }

    #[test]
    fn pm_timer_counts_up_and_is_read_only() {
        let (mut dev, _rx, _sci) = device();
        let first = read32(&mut dev, TMR, 0);
        // Spin until the 3.58 MHz counter moves; no wall-clock assertion.
        let mut later = first;
        for _ in 0..10_000_000 {
            later = read32(&mut dev, TMR, 0);
            if later != first {
                break;
            }
        }
        assert_ne!(later, first);
        assert!(later.wrapping_sub(first) < 0x8000_0000, "counts upwards");
        dev.write(TMR, 0, &[0; 4]);
        assert!(read32(&mut dev, TMR, 0).wrapping_sub(later) < 0x8000_0000);
    }

    #[test]
    fn unknown_ports_read_zero() {
        let (mut dev, _rx, _sci) = device();
        assert_eq!(read32(&mut dev, TMR, 4), 0);
        dev.write(TMR, 8, &[1, 2]);
        let mut empty = [0u8; 0];
        dev.read(EVT, 0, &mut empty);
    }
}
