//! A simulated I²C sensor (device 0x48, one 16-bit big-endian measurement
//! register at 0x00) implementing `embedded_hal::i2c::I2c`, and a busy-wait
//! delay.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

/// The simulated device's address.
pub const ADDRESS: SevenBitAddress = 0x48;
/// Its measurement register.
pub const REGISTER: u8 = 0x00;

/// The bus with the simulated sensor on it. Each read of [`REGISTER`]
/// returns the next sample of `1000 · (sin(0.3 t) + 0.3 sin(0.71 t) + 0.05 u)`,
/// `u` uniform in `[-1, 1]` from xorshift32.
pub struct SimSensorBus {
    t: u32,
    noise: u32,
    register: u8,
}

impl SimSensorBus {
    /// Starts the signal at time `t` with the noise generator seeded by `seed` (non-zero).
    pub fn new(t: u32, seed: u32) -> Self {
        Self {
            t,
            noise: seed,
            register: 0xFF,
        }
    }

    fn next_sample(&mut self) -> i16 {
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 17;
        self.noise ^= self.noise << 5;
        let u = self.noise as f32 / u32::MAX as f32 * 2.0 - 1.0;
        let t = self.t as f32;
        self.t += 1;
        let x = libm::sinf(0.3 * t) + 0.3 * libm::sinf(0.71 * t) + 0.05 * u;
        libm::roundf(x * 1000.0) as i16
    }
}

impl ErrorType for SimSensorBus {
    type Error = ErrorKind;
}

impl I2c for SimSensorBus {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if address != ADDRESS {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for op in operations {
            match op {
                Operation::Write([register]) => self.register = *register,
                Operation::Write(_) => {
                    return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data));
                }
                Operation::Read(buf) if self.register == REGISTER && buf.len() == 2 => {
                    buf.copy_from_slice(&self.next_sample().to_be_bytes());
                }
                Operation::Read(_) => return Err(ErrorKind::Other),
            }
        }
        Ok(())
    }
}

/// Busy-waits, assuming the MPS2's 25 MHz core clock.
pub struct SpinDelay;

impl DelayNs for SpinDelay {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay(ns / 40);
    }
}
