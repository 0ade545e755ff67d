//! goscope's kernel programs. One module per probe family; this file only
//! wires them into one object and supplies the panic handler.
#![no_std]
#![no_main]

mod alloc;
mod cgo;
mod counters;
mod cpu;
mod gc;
mod spawn;
mod target;
mod threads;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
