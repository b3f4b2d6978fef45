//! Images and clients for the tests of what files cost the server: a
//! decompression bomb, an incompressible image, and a reader that takes
//! a few bytes of a response and then stalls.

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A PNG of a few KB whose header says `side` x `side` 1-bit grey pixels,
/// all black: a decoder expands it to `side`² bytes or more.
pub fn bomb_png(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    // Bit depth 1, grey, deflate, no filter, no interlace.
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let row = vec![0u8; 1 + side.div_ceil(8) as usize];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..side {
        z.write_all(&row).unwrap();
    }
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A `side` x `side` RGBA PNG of noise: about `4 * side²` bytes, which no
/// encoder makes smaller.
pub fn noisy_png(side: u32) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let pixels: Vec<u8> = (0..side as usize * side as usize * 4)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, side, side, image::ExtendedColorType::Rgba8)
        .unwrap();
    out
}

/// A client that sends one GET, reads its head and a little of its body,
/// and then reads nothing until told to.
pub struct SlowReader {
    stream: TcpStream,
    /// The status line and headers.
    pub head: String,
    /// Body bytes read so far.
    pub body_read: usize,
}

impl SlowReader {
    /// GETs `path` from `base` (`http://host:port`) with a small receive
    /// buffer (the kernel holds little for it) and reads at least
    /// `at_least` bytes of the body, or until the response ends.
    pub async fn open(base: &str, path: &str, at_least: usize) -> Self {
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("http://ip:port");
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 << 10).unwrap();
        let mut stream = socket.connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0; 4096];
        let head_end = loop {
            let n = stream.read(&mut buf).await.expect("read the head");
            assert!(n > 0, "the server closed before the head");
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let mut reader = SlowReader {
            stream,
            head: String::from_utf8_lossy(&got[..head_end]).into_owned(),
            body_read: got.len() - head_end,
        };
        let want = at_least.min(reader.content_length());
        while reader.body_read < want {
            let n = reader.stream.read(&mut buf).await.expect("read the body");
            assert!(n > 0, "the response ended early");
            reader.body_read += n;
        }
        reader
    }

    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line")
    }

    /// The header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Reads on until the server ends the connection (or the whole body
    /// came), within `within`; the body bytes read in all.
    pub async fn read_rest(&mut self, within: Duration) -> usize {
        let mut buf = vec![0; 64 << 10];
        let deadline = tokio::time::Instant::now() + within;
        while self.body_read < self.content_length() {
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buf));
            match read
                .await
                .expect("the connection neither ended nor finished")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => self.body_read += n,
            }
        }
        self.body_read
    }
}
