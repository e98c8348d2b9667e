//! Builds small Windows kernel traces byte by byte, for tests and benches
//! that need a trace with exactly known content: uncompressed 64-bit
//! buffers, the logfile header record, and kernel Process events
//! (version 4, 64-bit payloads). Layouts as in `src/etl/layout.rs` and
//! `src/decode/mof_process.rs`.

#![allow(dead_code)]

const BUFFER_HEADER: usize = 72;
const BUFFER_SIZE: usize = 64 << 10;
/// FILETIME of 2020-01-01T00:00:00Z; event `i` is stamped `i` seconds later.
pub const START: u64 = 132_223_104_000_000_000;
/// Kernel Process opcodes.
pub const OPCODE_START: u8 = 1;
pub const OPCODE_END: u8 = 2;

/// A SYSTEM_TRACE_HEADER (64-bit) record, padded to 8 bytes.
pub fn system_record(group: u8, opcode: u8, version: u16, time: i64, payload: &[u8]) -> Vec<u8> {
    let size = u16::try_from(32 + payload.len()).expect("a record fits in 64 KiB");
    let mut r = Vec::with_capacity(usize::from(size) + 8);
    r.extend(version.to_le_bytes());
    r.push(0x02); // SYSTEM_TRACE_HEADER, 64-bit
    r.push(0xc0); // trace header marker
    r.extend(size.to_le_bytes());
    r.push(opcode);
    r.push(group);
    r.extend(1u32.to_le_bytes()); // thread id
    r.extend(4u32.to_le_bytes()); // process id
    r.extend(time.to_le_bytes());
    r.extend([0u8; 8]); // kernel and user time
    r.extend_from_slice(payload);
    while r.len() % 8 != 0 {
        r.push(0);
    }
    r
}

fn utf16z(units: &[u16]) -> Vec<u8> {
    units
        .iter()
        .chain(&[0])
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

/// TRACE_LOGFILE_HEADER: Windows 10, system-time clock starting at [`START`].
fn logfile_header() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend((BUFFER_SIZE as u32).to_le_bytes());
    p.extend([10, 0, 0, 0]); // Windows 10
    p.extend(19045u32.to_le_bytes()); // build
    p.extend(2u32.to_le_bytes()); // processors
    p.extend((START + 600_000_000).to_le_bytes()); // end time
    p.extend(156_250u32.to_le_bytes()); // timer resolution
    p.extend(0u32.to_le_bytes()); // maximum file size
    p.extend(0u32.to_le_bytes()); // log file mode: not compressed
    p.extend(1u32.to_le_bytes()); // buffers written
    p.extend(0u32.to_le_bytes()); // start buffers
    p.extend(8u32.to_le_bytes()); // pointer size
    p.extend(0u32.to_le_bytes()); // events lost
    p.extend(3000u32.to_le_bytes()); // CPU MHz
    p.extend([0u8; 16]); // logger and file name pointers
    p.extend([0u8; 176]); // time zone and padding
    p.extend(START.to_le_bytes()); // boot time
    p.extend(10_000_000u64.to_le_bytes()); // perf frequency
    p.extend(START.to_le_bytes()); // start time
    p.extend(2u32.to_le_bytes()); // clock: system time
    p.extend(0u32.to_le_bytes()); // buffers lost
    p.extend(utf16z(&"builder".encode_utf16().collect::<Vec<_>>()));
    p.extend(utf16z(&"builder.etl".encode_utf16().collect::<Vec<_>>()));
    p
}

/// One kernel Process event: `image` as raw bytes (read as Latin-1),
/// `command_line` as raw UTF-16 units.
pub struct Process<'a> {
    pub opcode: u8,
    pub pid: u32,
    pub ppid: u32,
    pub exit_status: i32,
    pub image: &'a [u8],
    pub command_line: &'a [u16],
    /// With a SID (S-1-5-21-…-1001) or with none.
    pub sid: bool,
}

/// The version-4, 64-bit payload of a kernel Process event.
pub fn process_payload(p: &Process<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend((0xffff_c58a_0000_0000u64 | u64::from(p.pid)).to_le_bytes());
    b.extend(p.pid.to_le_bytes());
    b.extend(p.ppid.to_le_bytes());
    b.extend(1u32.to_le_bytes()); // session
    b.extend(p.exit_status.to_le_bytes());
    b.extend(0x1aa_0000u64.to_le_bytes()); // directory table base
    b.extend(0u32.to_le_bytes()); // flags
    if p.sid {
        // TOKEN_USER (pointer, attributes), then the SID.
        b.extend(0xffff_a000_1234_5678u64.to_le_bytes());
        b.extend([0u8; 8]);
        b.extend([1, 5, 0, 0, 0, 0, 0, 5]);
        for sub in [21u32, 1_004_336_348, 1_177_238_915, 682_003_330, 1001] {
            b.extend(sub.to_le_bytes());
        }
    } else {
        b.extend([0u8; 4]);
    }
    b.extend_from_slice(p.image);
    b.push(0);
    b.extend(utf16z(p.command_line));
    b.extend(utf16z(&[])); // package full name
    b.extend(utf16z(&[])); // application id
    b
}

/// A trace of `events` in order, packed into as many 64 KiB buffers as
/// they need.
pub fn trace(events: &[Process<'_>]) -> Vec<u8> {
    let mut records = vec![system_record(0, 0, 2, 0, &logfile_header())];
    for (i, p) in events.iter().enumerate() {
        let time = 10_000_000 * (i as i64 + 1);
        records.push(system_record(3, p.opcode, 4, time, &process_payload(p)));
    }
    let mut file = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let flush = |buffer: &mut Vec<u8>, file: &mut Vec<u8>| {
        let filled = BUFFER_HEADER + buffer.len();
        let mut header = vec![0u8; BUFFER_HEADER];
        header[0..4].copy_from_slice(&(BUFFER_SIZE as u32).to_le_bytes());
        header[0x30..0x34].copy_from_slice(&(filled as u32).to_le_bytes());
        file.extend(header);
        file.append(buffer);
        file.resize(file.len() + BUFFER_SIZE - filled, 0xff);
    };
    for record in records {
        if BUFFER_HEADER + buffer.len() + record.len() > BUFFER_SIZE {
            flush(&mut buffer, &mut file);
        }
        buffer.extend(record);
    }
    flush(&mut buffer, &mut file);
    file
}

/// `processes` processes, each started and ended (2 × `processes` events).
pub fn dense_process_trace(processes: u32) -> Vec<u8> {
    let command_line: Vec<u16> =
        r#""C:\Windows\system32\cmd.exe" /c exit 3"#.encode_utf16().collect();
    let events: Vec<Process<'_>> = (0..processes)
        .flat_map(|i| {
            let pid = 1000 + 4 * i;
            [OPCODE_START, OPCODE_END].map(|opcode| Process {
                opcode,
                pid,
                ppid: 4,
                exit_status: if opcode == OPCODE_END { 3 } else { 259 },
                image: b"cmd.exe",
                command_line: &command_line,
                sid: true,
            })
        })
        .collect();
    trace(&events)
}
