//! cfitsio on a memory buffer: the handle, its reads, its error texts.

use std::{
    ffi::{CStr, CString, c_char, c_int, c_void},
    ptr,
};

use fitsio::sys as ffi;

use super::*;

/// cfitsio's text for a status code.
pub(super) fn status_text(status: c_int) -> String {
    let mut buf = [0 as c_char; 32];
    // SAFETY: ffgerr writes at most 30 characters and a NUL into the 32-byte buffer.
    unsafe { ffi::ffgerr(status, buf.as_mut_ptr()) };
    // SAFETY: the buffer is NUL-terminated (zeroed, and ffgerr terminates what it writes).
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A cfitsio handle on a memory buffer, closed on drop. cfitsio keeps the addresses of the
/// buffer pointer and size, so they live in a box that outlives the handle.
pub(super) struct MemFits<'a> {
    fptr: *mut ffi::fitsfile,
    _mem: Box<(*mut c_void, usize)>,
    _bytes: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> MemFits<'a> {
    pub(super) fn open(bytes: &'a [u8]) -> Result<MemFits<'a>, SpectrumError> {
        let mut mem = Box::new((bytes.as_ptr() as *mut c_void, bytes.len()));
        let mut fptr = ptr::null_mut();
        let mut status = 0;
        let name = c"mem.fits";
        // SAFETY: READONLY with no realloc function: cfitsio only reads the buffer, which
        // outlives the handle (the lifetime 'a), as do the boxed pointer and size it keeps.
        unsafe {
            ffi::ffomem(
                &mut fptr,
                name.as_ptr(),
                ffi::READONLY as c_int,
                &mut mem.0,
                &mut mem.1,
                0,
                None,
                &mut status,
            );
        }
        if status != 0 || fptr.is_null() {
            clear_messages();
            return Err(match status as u32 {
                ffi::END_OF_FILE => SpectrumError::Truncated {
                    promised: 2880,
                    actual: bytes.len() as u64,
                },
                _ => SpectrumError::BadHeader(status_text(status)),
            });
        }
        Ok(MemFits {
            fptr,
            _mem: mem,
            _bytes: std::marker::PhantomData,
        })
    }

    fn check(
        &self,
        status: c_int,
        what: impl FnOnce(String) -> SpectrumError,
    ) -> Result<(), SpectrumError> {
        if status == 0 {
            return Ok(());
        }
        clear_messages();
        Err(what(status_text(status)))
    }

    /// (BITPIX, shape with the slowest axis first, as numpy shows it).
    pub(super) fn image_layout(&mut self) -> Result<(i32, Vec<usize>), SpectrumError> {
        let (mut bitpix, mut naxis, mut status) = (0, 0, 0);
        // SAFETY: a valid open handle; out-parameters are plain ints.
        unsafe {
            ffi::ffgidt(self.fptr, &mut bitpix, &mut status);
            ffi::ffgidm(self.fptr, &mut naxis, &mut status);
        }
        self.check(status, SpectrumError::BadHeader)?;
        let naxis = naxis.clamp(0, 999) as usize;
        let mut axes = vec![0 as ffi::LONGLONG; naxis];
        // SAFETY: `axes` holds exactly `naxis` elements.
        unsafe { ffi::ffgiszll(self.fptr, naxis as c_int, axes.as_mut_ptr(), &mut status) };
        self.check(status, SpectrumError::BadHeader)?;
        Ok((
            bitpix,
            axes.iter().rev().map(|&a| a.max(0) as usize).collect(),
        ))
    }

    /// Where the primary HDU's data start, and end by the header: `elements` values of
    /// `bytes_per` bytes (the padding to 2880 bytes may be absent).
    pub(super) fn data_span(
        &mut self,
        elements: u64,
        bytes_per: u64,
    ) -> Result<(u64, u64), SpectrumError> {
        let (mut head, mut data, mut end, mut status) = (0, 0, 0, 0);
        // SAFETY: a valid open handle; out-parameters are plain integers.
        unsafe { ffi::ffghadll(self.fptr, &mut head, &mut data, &mut end, &mut status) };
        self.check(status, SpectrumError::BadHeader)?;
        let start = data.max(0) as u64;
        Ok((
            start,
            start.saturating_add(elements.saturating_mul(bytes_per)),
        ))
    }

    pub(super) fn key_string(&mut self, key: &str) -> Result<Option<String>, SpectrumError> {
        let name = CString::new(key)
            .map_err(|_| SpectrumError::BadHeader(format!("bad key name {key}")))?;
        let mut value = [0 as c_char; 128];
        let mut status = 0;
        // SAFETY: cfitsio writes at most FLEN_VALUE (71) characters into the 128-byte buffer.
        unsafe {
            ffi::ffgkys(
                self.fptr,
                name.as_ptr(),
                value.as_mut_ptr(),
                ptr::null_mut(),
                &mut status,
            )
        };
        if status == ffi::KEY_NO_EXIST as c_int {
            clear_messages();
            return Ok(None);
        }
        self.check(status, |t| {
            SpectrumError::BadHeader(format!("keyword {key}: {t}"))
        })?;
        // SAFETY: NUL-terminated by cfitsio within the buffer (zeroed beforehand).
        Ok(Some(
            unsafe { CStr::from_ptr(value.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        ))
    }

    /// A numeric key; absent or not a number is `None` (metadata is informative, not required).
    fn key_f64(&mut self, key: &str) -> Option<f64> {
        let name = CString::new(key).ok()?;
        let (mut value, mut status) = (0f64, 0);
        // SAFETY: a valid open handle; the value is a plain double.
        unsafe {
            ffi::ffgkyd(
                self.fptr,
                name.as_ptr(),
                &mut value,
                ptr::null_mut(),
                &mut status,
            )
        };
        if status != 0 {
            clear_messages();
            return None;
        }
        value.is_finite().then_some(value)
    }

    pub(super) fn metadata(&mut self) -> Result<Metadata, SpectrumError> {
        let mut s = |k: &str| self.key_string(k).map(|v| v.map(|v| v.trim().to_string()));
        let (targetname, observed_at, class, subtype, magtype) = (
            s("DESIG")?,
            s("DATE-OBS")?,
            s("CLASS")?,
            s("SUBCLASS")?,
            s("MAGTYPE")?,
        );
        let mut f = |k: &str| self.key_f64(k);
        Ok(Metadata {
            targetname,
            observed_at,
            class,
            subtype,
            magtype,
            ra: f("RA"),
            dec: f("DEC"),
            mag_1: f("MAG1"),
            mag_2: f("MAG2"),
            mag_3: f("MAG3"),
            mag_4: f("MAG4"),
            mag_5: f("MAG5"),
            mag_6: f("MAG6"),
            mag_7: f("MAG7"),
            sn_u: f("SN_U"),
            sn_g: f("SN_G"),
            sn_r: f("SN_R"),
            sn_i: f("SN_I"),
            sn_z: f("SN_Z"),
            z: f("Z"),
            z_err: f("Z_ERR"),
        })
    }

    /// Row `row` (0-based) of a (ROWS, pixels) image as f32; the caller checked the size.
    pub(super) fn read_row(
        &mut self,
        row: usize,
        pixels: usize,
    ) -> Result<Vec<f32>, SpectrumError> {
        let mut out = vec![0f32; pixels];
        let (mut anynul, mut status) = (0, 0);
        let first = (row * pixels + 1) as ffi::LONGLONG;
        // SAFETY: `out` holds `pixels` f32 values, exactly the number requested as TFLOAT;
        // a null `nulval` means no undefined-value substitution (NaN stays NaN).
        unsafe {
            ffi::ffgpv(
                self.fptr,
                ffi::TFLOAT as c_int,
                first,
                pixels as ffi::LONGLONG,
                ptr::null_mut(),
                out.as_mut_ptr() as *mut c_void,
                &mut anynul,
                &mut status,
            );
        }
        self.check(status, |text| SpectrumError::Data { status, text })?;
        Ok(out)
    }
}

impl Drop for MemFits<'_> {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: the handle is open and closed exactly once here.
        unsafe { ffi::ffclos(self.fptr, &mut status) };
        if status != 0 {
            clear_messages();
        }
    }
}

/// cfitsio keeps an error-message stack; a skipped file must not leave its messages behind.
pub(super) fn clear_messages() {
    // SAFETY: no arguments; cfitsio guards the stack with its own lock when reentrant.
    unsafe { ffi::ffcmsg() };
}
