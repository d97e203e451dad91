//! MC146818 CMOS real-time clock and its 128 bytes of CMOS RAM.
//!
//! Port 0x70 selects a register (bit 7 is the NMI-disable bit of the PC/AT,
//! kept but without effect); port 0x71 reads or writes it. The time and date
//! registers always show the host's UTC clock, in BCD or binary and in 24- or
//! 12-hour form as register B asks; guest writes to them are ignored, so the
//! guest cannot move the host clock. No RTC interrupts are generated.
//!
//! Source: Motorola MC146818A datasheet (register map, register A/B/C/D).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::read_byte_register;
use crate::vmm::devices::BusDevice;
use crate::vmm::layout::{RTC_DATA_PORT, RTC_INDEX_PORT};

/// Bytes of CMOS (clock registers included).
const CMOS_SIZE: usize = 128;
/// Port 0x70 bit 7: NMI disable (PC/AT).
const INDEX_NMI_DISABLE: u8 = 0x80;
const INDEX_MASK: u8 = 0x7f;

// Register indices.
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DAY_OF_MONTH: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
/// Century (IBM PC convention; the FADT's CENTURY field points here).
pub const REG_CENTURY: u8 = 0x32;

// Register A.
/// Update in progress: the time registers are about to change.
const REG_A_UIP: u8 = 0x80;
/// Divider 010 (32.768 kHz time base) and rate 0110 (1024 Hz), the PC default.
const REG_A_DEFAULT: u8 = 0x26;
/// The update cycle starts 244 µs before the seconds change (datasheet).
const UIP_WINDOW: Duration = Duration::from_micros(244);

// Register B.
/// SET: updates are inhibited while the guest sets the clock.
const REG_B_SET: u8 = 0x80;
/// DM: 1 = binary, 0 = BCD.
const REG_B_BINARY: u8 = 0x04;
/// 24/12: 1 = 24-hour mode.
const REG_B_24H: u8 = 0x02;
const REG_B_DEFAULT: u8 = REG_B_24H;
/// In 12-hour mode bit 7 of the hours register marks PM.
const HOURS_PM: u8 = 0x80;

// Register D.
/// VRT: valid RAM and time (the battery is good).
const REG_D_VRT: u8 = 0x80;

/// A source of "now" as a duration since the Unix epoch.
type Clock = Box<dyn Fn() -> Duration + Send>;

fn host_utc() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DateTime {
    year: u32,
    month: u8,
    day: u8,
    /// 1 = Sunday .. 7 = Saturday (MC146818 convention).
    weekday: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            weekday: ((days + 4) % 7 + 1) as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u32, u8, u8) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u32, month as u8, day as u8)
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// MC146818 CMOS RTC with the host's wall clock (ports 0x70/0x71).
pub struct Rtc {
    index: u8,
    cmos: [u8; CMOS_SIZE],
    clock: Clock,
}

impl Rtc {
    pub fn new() -> Self {
        Self::with_clock(Box::new(host_utc))
    }

    fn with_clock(clock: Clock) -> Self {
        let mut cmos = [0u8; CMOS_SIZE];
        cmos[usize::from(REG_A)] = REG_A_DEFAULT;
        cmos[usize::from(REG_B)] = REG_B_DEFAULT;
        Rtc {
            index: 0,
            cmos,
            clock,
        }
    }

    /// Encode a clock value as register B asks (BCD or binary).
    fn encode(&self, v: u8) -> u8 {
        if self.cmos[usize::from(REG_B)] & REG_B_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.cmos[usize::from(REG_B)] & REG_B_24H != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { HOURS_PM } else { 0 };
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | pm
    }

    fn read_register(&mut self, reg: u8) -> u8 {
        let now = (self.clock)();
        let t = DateTime::from_unix(now);
        match reg {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => self.encode_hour(t.hour),
            REG_DAY_OF_WEEK => self.encode(t.weekday),
            REG_DAY_OF_MONTH => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode((t.year % 100) as u8),
            REG_CENTURY => self.encode((t.year / 100 % 100) as u8),
            REG_A => {
                let updating = self.cmos[usize::from(REG_B)] & REG_B_SET == 0
                    && Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos().into())
                        <= UIP_WINDOW;
                let uip = if updating { REG_A_UIP } else { 0 };
                (self.cmos[usize::from(REG_A)] & !REG_A_UIP) | uip
            }
            // No interrupt source is modelled: no flags, and reading clears.
            REG_C => 0,
            REG_D => REG_D_VRT,
            _ => self.cmos[usize::from(reg & INDEX_MASK)],
        }
    }

    fn write_register(&mut self, reg: u8, value: u8) {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY_OF_WEEK | REG_DAY_OF_MONTH
            | REG_MONTH | REG_YEAR | REG_CENTURY => {
                log::debug!("rtc: ignoring a write to clock register {reg:#04x}")
            }
            REG_A => self.cmos[usize::from(REG_A)] = value & !REG_A_UIP,
            REG_C | REG_D => {} // read-only
            _ => self.cmos[usize::from(reg & INDEX_MASK)] = value,
        }
    }

    fn selected(&self) -> u8 {
        self.index & INDEX_MASK
    }
}

impl Default for Rtc {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let port = base + offset;
        let value = if port == u64::from(RTC_INDEX_PORT) {
            self.index
        } else if port == u64::from(RTC_DATA_PORT) {
            self.read_register(self.selected())
        } else {
            0
        };
        read_byte_register(data, value);
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        let port = base + offset;
        if port == u64::from(RTC_INDEX_PORT) {
            self.index = value & (INDEX_MASK | INDEX_NMI_DISABLE);
        } else if port == u64::from(RTC_DATA_PORT) {
            self.write_register(self.selected(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: u64 = RTC_INDEX_PORT as u64;
    const DATA: u64 = RTC_DATA_PORT as u64;

    /// 2024-02-29 13:05:09 UTC, a Thursday (`date -u -d @1709211909`).
    const LEAP_DAY_AFTERNOON: u64 = 1_709_211_909;

    fn rtc_at(secs: u64, nanos: u32) -> Rtc {
        Rtc::with_clock(Box::new(move || Duration::new(secs, nanos)))
    }

    fn cmos_read(rtc: &mut Rtc, reg: u8) -> u8 {
        rtc.write(INDEX, 0, &[reg]);
        let mut b = [0u8];
        rtc.read(DATA, 0, &mut b);
        b[0]
    }

    fn cmos_write(rtc: &mut Rtc, reg: u8, value: u8) {
        rtc.write(INDEX, 0, &[reg]);
        rtc.write(DATA, 0, &[value]);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(LEAP_DAY_AFTERNOON / 86_400), (2024, 2, 29));
        // 2000-03-01 follows the leap day of a century divisible by 400.
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01.
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
    }

    #[test]
    fn time_and_date_in_bcd_24h_by_default() {
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 0);
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x09);
        assert_eq!(cmos_read(&mut rtc, REG_MINUTES), 0x05);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 0x13);
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_WEEK), 5);
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_MONTH), 0x29);
        assert_eq!(cmos_read(&mut rtc, REG_MONTH), 0x02);
        assert_eq!(cmos_read(&mut rtc, REG_YEAR), 0x24);
        assert_eq!(cmos_read(&mut rtc, REG_CENTURY), 0x20);
    }

    #[test]
    fn binary_and_12_hour_modes_follow_register_b() {
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 0);
        cmos_write(&mut rtc, REG_B, REG_B_BINARY);
        assert_eq!(cmos_read(&mut rtc, REG_B), REG_B_BINARY);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 1 | HOURS_PM);
        assert_eq!(cmos_read(&mut rtc, REG_DAY_OF_MONTH), 29);
        assert_eq!(cmos_read(&mut rtc, REG_YEAR), 24);
        cmos_write(&mut rtc, REG_B, REG_B_BINARY | REG_B_24H);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 13);
        // Midnight is 12 AM in 12-hour mode.
        let mut rtc = rtc_at(0, 0);
        cmos_write(&mut rtc, REG_B, 0);
        assert_eq!(cmos_read(&mut rtc, REG_HOURS), 0x12);
        assert_eq!(cmos_read(&mut rtc, REG_CENTURY), 0x19);
    }

    #[test]
    fn status_registers() {
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 0);
        assert_eq!(cmos_read(&mut rtc, REG_A), REG_A_DEFAULT);
        assert_eq!(cmos_read(&mut rtc, REG_B), REG_B_DEFAULT);
        assert_eq!(cmos_read(&mut rtc, REG_C), 0);
        assert_eq!(cmos_read(&mut rtc, REG_D), REG_D_VRT);
        cmos_write(&mut rtc, REG_D, 0);
        assert_eq!(cmos_read(&mut rtc, REG_D), REG_D_VRT);
        cmos_write(&mut rtc, REG_A, 0xff);
        assert_eq!(cmos_read(&mut rtc, REG_A), 0x7f);
    }

    #[test]
    fn uip_is_set_just_before_the_second_changes() {
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 999_900_000);
        assert_eq!(cmos_read(&mut rtc, REG_A), REG_A_DEFAULT | REG_A_UIP);
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 500_000_000);
        assert_eq!(cmos_read(&mut rtc, REG_A), REG_A_DEFAULT);
        // No update cycle while SET holds the clock.
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 999_900_000);
        cmos_write(&mut rtc, REG_B, REG_B_SET | REG_B_24H);
        assert_eq!(cmos_read(&mut rtc, REG_A), REG_A_DEFAULT);
    }

    #[test]
    fn clock_writes_are_ignored_and_ram_is_kept() {
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 0);
        cmos_write(&mut rtc, REG_SECONDS, 0x42);
        assert_eq!(cmos_read(&mut rtc, REG_SECONDS), 0x09);
        for reg in [0x01u8, 0x0e, 0x31, 0x33, 0x7f] {
            cmos_write(&mut rtc, reg, reg ^ 0xa5);
        }
        for reg in [0x01u8, 0x0e, 0x31, 0x33, 0x7f] {
            assert_eq!(cmos_read(&mut rtc, reg), reg ^ 0xa5);
        }
    }

    #[test]
    fn nmi_bit_does_not_change_the_register_selected() {
        let mut rtc = rtc_at(LEAP_DAY_AFTERNOON, 0);
        cmos_write(&mut rtc, 0x40, 0x77);
        assert_eq!(cmos_read(&mut rtc, 0x40 | INDEX_NMI_DISABLE), 0x77);
        let mut b = [0u8];
        rtc.read(INDEX, 0, &mut b);
        assert_eq!(b[0], 0x40 | INDEX_NMI_DISABLE);
    }

    #[test]
    fn every_register_reads_without_panicking() {
        let mut rtc = Rtc::new();
        for index in 0..=u8::MAX {
            cmos_read(&mut rtc, index);
        }
        let mut buf = [0u8; 4];
        rtc.read(DATA, 0, &mut buf);
        rtc.read(INDEX, 5, &mut buf);
        rtc.write(DATA, 0, &[]);
        // The host clock is after 2020 (sanity of the real clock path).
        assert!(cmos_read(&mut rtc, REG_CENTURY) >= 0x20);
    }
}
