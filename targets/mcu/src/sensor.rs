//! Sensors: anything that produces one `f32` sample per read.
//!
//! [`I2cSensor`] implements the protocol most I²C sensors share for a single
//! 16-bit measurement:
//!
//! 1. write one byte, the register address, to the 7-bit device address;
//! 2. repeated start, read two bytes from the same device address
//!    (one `embedded_hal::i2c::I2c::write_read` transaction);
//! 3. the two bytes are a big-endian (MSB first) two's-complement `i16`;
//!    the sample is `raw × scale` (for example `scale = 1/16384` for an
//!    accelerometer at ±2 g).
//!
//! ```
//! use ember_mcu::{I2cSensor, Sensor};
//! use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
//!
//! // Device 0x48, register 0x00 answers 0x01 0x00 = 256 → 256 × 0.5 = 128.0
//! let bus = Mock::new(&[Transaction::write_read(0x48, vec![0x00], vec![0x01, 0x00])]);
//! let mut sensor = I2cSensor::new(bus, 0x48, 0x00, 0.5);
//! assert_eq!(sensor.read().unwrap(), 128.0);
//! sensor.release().done();
//! ```

use embedded_hal::i2c::{I2c, SevenBitAddress};

/// A source of samples.
pub trait Sensor {
    /// The error a read can fail with (for I²C, the bus's error).
    type Error: core::fmt::Debug;

    /// Reads one sample.
    fn read(&mut self) -> Result<f32, Self::Error>;
}

/// A sensor behind an I²C bus: reads a 16-bit big-endian signed register
/// (see the [module documentation](self) for the protocol).
#[derive(Debug)]
pub struct I2cSensor<I2C> {
    bus: I2C,
    address: SevenBitAddress,
    register: u8,
    scale: f32,
}

impl<I2C: I2c> I2cSensor<I2C> {
    /// A sensor at 7-bit `address` whose measurement is the `i16` in
    /// `register` (MSB first), reported as `raw × scale`.
    pub fn new(bus: I2C, address: SevenBitAddress, register: u8, scale: f32) -> Self {
        Self {
            bus,
            address,
            register,
            scale,
        }
    }

    /// Reads the raw register value.
    pub fn read_raw(&mut self) -> Result<i16, I2C::Error> {
        let mut buf = [0u8; 2];
        self.bus
            .write_read(self.address, &[self.register], &mut buf)?;
        Ok(i16::from_be_bytes(buf))
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.bus
    }
}

impl<I2C: I2c> Sensor for I2cSensor<I2C> {
    type Error = I2C::Error;

    fn read(&mut self) -> Result<f32, Self::Error> {
        Ok(f32::from(self.read_raw()?) * self.scale)
    }
}
