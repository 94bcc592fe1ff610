//! The CMOS real-time clock of a PC (an MC146818 at ports `0x70`/`0x71`): where a guest
//! without other clocks reads the date at boot (Linux's `rtc_cmos`, `RTC_HCTOSYS`).
//!
//! The time is the host's (UTC) plus an offset the guest may set by writing the time
//! registers (so `hwclock --systohc` sticks for the life of the machine). Status B's data
//! mode (BCD or binary) and 12/24-hour bits are honoured on both reads and writes; the
//! update-in-progress bit is never set (the registers are computed on each read, never torn).
//! No alarm or periodic interrupts are raised; the other bytes are plain battery-backed RAM.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// The century register (the FADT tells the guest where it is).
pub const CENTURY_REGISTER: u8 = CENTURY;
/// Status B: 24-hour mode, binary (not BCD) data.
const B_24H: u8 = 0x02;
const B_BINARY: u8 = 0x04;
/// Status D: the battery is good (the time is valid).
const D_VALID: u8 = 0x80;

pub struct Rtc {
    index: u8,
    ram: [u8; 128],
    /// Seconds the guest's clock is ahead of the host's.
    offset: i64,
    /// The host's clock (a fixed one in tests).
    now: fn() -> DateTime<Utc>,
}

impl Default for Rtc {
    fn default() -> Self {
        Self::with_clock(Utc::now)
    }
}

impl Rtc {
    pub fn with_clock(now: fn() -> DateTime<Utc>) -> Self {
        let mut ram = [0u8; 128];
        ram[STATUS_A as usize] = 0x26; // 32.768 kHz time base, 1024 Hz rate
        ram[STATUS_B as usize] = B_24H;
        Rtc { index: 0, ram, offset: 0, now }
    }

    fn time(&self) -> DateTime<Utc> {
        (self.now)() + chrono::Duration::seconds(self.offset)
    }

    fn encode(&self, v: u32) -> u8 {
        if self.ram[STATUS_B as usize] & B_BINARY != 0 {
            v as u8
        } else {
            (((v / 10) << 4) | (v % 10)) as u8
        }
    }

    fn decode(&self, b: u8) -> u32 {
        if self.ram[STATUS_B as usize] & B_BINARY != 0 {
            b as u32
        } else {
            ((b >> 4) as u32) * 10 + (b & 0x0f) as u32
        }
    }

    fn hours(&self, h: u32) -> u8 {
        if self.ram[STATUS_B as usize] & B_24H != 0 {
            return self.encode(h);
        }
        let pm = if h >= 12 { 0x80 } else { 0 };
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.encode(h12) | pm
    }

    fn register(&self, r: u8) -> u8 {
        let t = self.time();
        match r {
            SECONDS => self.encode(t.second()),
            MINUTES => self.encode(t.minute()),
            HOURS => self.hours(t.hour()),
            WEEKDAY => self.encode(t.weekday().number_from_sunday()),
            DAY => self.encode(t.day()),
            MONTH => self.encode(t.month()),
            YEAR => self.encode(t.year().rem_euclid(100) as u32),
            CENTURY => self.encode((t.year() / 100) as u32),
            STATUS_A => self.ram[STATUS_A as usize] & 0x7f, // never "update in progress"
            STATUS_C => 0,
            STATUS_D => D_VALID,
            r => self.ram[r as usize & 0x7f],
        }
    }

    /// The guest set one time register: the clock moves by the difference.
    fn set_register(&mut self, r: u8, b: u8) {
        let t = self.time();
        let (mut y, mut mo, mut d, mut h, mut mi, mut s) = (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
        match r {
            SECONDS => s = self.decode(b),
            MINUTES => mi = self.decode(b),
            HOURS => {
                h = self.decode(b & 0x7f);
                if self.ram[STATUS_B as usize] & B_24H == 0 {
                    h = (h % 12) + if b & 0x80 != 0 { 12 } else { 0 };
                }
            }
            DAY => d = self.decode(b),
            MONTH => mo = self.decode(b),
            YEAR => y = y - y.rem_euclid(100) + self.decode(b) as i32,
            CENTURY => y = self.decode(b) as i32 * 100 + y.rem_euclid(100),
            _ => return,
        }
        // A date that does not exist (mid-way through setting day and month) is ignored.
        let Some(new) = NaiveDate::from_ymd_opt(y, mo, d).and_then(|d| d.and_hms_opt(h, mi, s)) else { return };
        let new = Utc.from_utc_datetime(&new);
        self.offset += (new - t).num_seconds();
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            DATA_PORT => self.register(self.index),
            _ => 0xff,
        }
    }

    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            INDEX_PORT => self.index = value & 0x7f, // bit 7 masks NMIs: nothing to mask here
            DATA_PORT => match self.index {
                SECONDS | MINUTES | HOURS | DAY | MONTH | YEAR | CENTURY => self.set_register(self.index, value),
                STATUS_A => self.ram[STATUS_A as usize] = value & 0x7f,
                STATUS_B => self.ram[STATUS_B as usize] = value,
                STATUS_C | STATUS_D | WEEKDAY => {}
                r => self.ram[r as usize] = value,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 21, 7, 9).unwrap()
    }

    fn reg(rtc: &mut Rtc, r: u8) -> u8 {
        rtc.write(INDEX_PORT, r | 0x80);
        rtc.read(DATA_PORT)
    }

    #[test]
    fn reads_the_host_time_in_bcd_then_binary() {
        let mut rtc = Rtc::with_clock(fixed);
        assert_eq!(
            [SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR, CENTURY].map(|r| reg(&mut rtc, r)),
            [0x09, 0x07, 0x21, 0x01, 0x12, 0x26, 0x20]
        );
        assert_eq!(reg(&mut rtc, WEEKDAY), 3, "a Tuesday (Sunday = 1)");
        assert_eq!(reg(&mut rtc, STATUS_D), D_VALID);
        assert_eq!(reg(&mut rtc, STATUS_A) & 0x80, 0, "never update-in-progress");
        rtc.write(INDEX_PORT, STATUS_B);
        rtc.write(DATA_PORT, B_24H | B_BINARY);
        assert_eq!([SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR, CENTURY].map(|r| reg(&mut rtc, r)), [9, 7, 21, 1, 12, 26, 20]);
        rtc.write(INDEX_PORT, STATUS_B);
        rtc.write(DATA_PORT, 0);
        assert_eq!(reg(&mut rtc, HOURS), 0x80 | 0x09, "9 pm in 12-hour BCD");
    }

    #[test]
    fn the_guest_sets_the_clock_and_ram_keeps_its_bytes() {
        let mut rtc = Rtc::with_clock(fixed);
        rtc.write(INDEX_PORT, YEAR);
        rtc.write(DATA_PORT, 0x30);
        rtc.write(INDEX_PORT, HOURS);
        rtc.write(DATA_PORT, 0x05);
        assert_eq!(rtc.time(), Utc.with_ymd_and_hms(2030, 12, 1, 5, 7, 9).unwrap());
        rtc.write(INDEX_PORT, 0x40);
        rtc.write(DATA_PORT, 0xab);
        assert_eq!(reg(&mut rtc, 0x40), 0xab);
        rtc.write(INDEX_PORT, DAY);
        rtc.write(DATA_PORT, 0x31); // 31 December... but the month is still 12: fine
        assert_eq!(reg(&mut rtc, DAY), 0x31);
        rtc.write(INDEX_PORT, MONTH);
        rtc.write(DATA_PORT, 0x11); // 31 November does not exist: ignored
        assert_eq!(reg(&mut rtc, MONTH), 0x12);
    }
}
