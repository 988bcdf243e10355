//! One client connection, for its whole life on one core.
//!
//! Two tasks share the connection: the reader frames requests (4-byte size, then the body) and
//! admits each against the core's memory budget before buffering it, and the processor handles
//! the requests one at a time, in arrival order, and writes each response as a vectored write of
//! its `Bytes` chunks. Processing in order is what makes responses leave in request order, as
//! Kafka requires; the reader keeps reading ahead (up to `connection_inflight_max` frames) so a
//! pipelining client never waits on a round trip.
//!
//! Back-pressure: a frame is read only once its bytes are admitted; when the core's budget is
//! spent, the reader stops reading the socket and TCP pushes back on the client. Nothing here is
//! unbounded: the read-ahead queue has `connection_inflight_max` slots and each slot's bytes are
//! counted in the budget until its response is written.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};

use crate::limits::{
    CONNECTION_BUFFER_BYTES, CONNECTION_READ_BYTES_MIN, CONNECTION_RESERVE_BYTES_MAX,
    CONNECTION_RESERVE_BYTES_MIN, SENDMSG_CHUNKS_MAX,
};

/// A listener only this process holds: without SO_REUSEPORT (which glommio's `bind` sets),
/// so a second process given the same address fails to bind instead of silently sharing the
/// port. For the metrics and controller listeners; client ports are shared by the cores on
/// purpose.
pub fn listen_exclusive(addr: std::net::SocketAddr) -> io::Result<glommio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(crate::limits::LISTEN_BACKLOG_MAX)?;
    // SAFETY: the fd is a listening TCP socket we own and hand over exactly once.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// What a handler asks the connection to do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send these chunks: a whole response frame, its 4-byte size first.
    Respond(Vec<Bytes>),
    /// Send nothing (Produce with acks=0).
    Silent,
    /// Close the connection: the request was malformed or unsupported beyond answering.
    Close(String),
}

/// Per-connection limits, copied from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_bytes_max: usize,
    pub inflight_max: usize,
}

/// A request frame (body without its size prefix) and the budget it holds until answered.
struct Admitted {
    frame: Bytes,
    _permit: StaticPermit,
}

/// Why the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    Eof,
    TooLarge(usize),
    Io(io::Error),
}

/// Serves `stream` until the client closes it, a request asks for a close, or the broker stops:
/// `stopping` is checked between requests, and `stop` (resolving when the broker stops) ends
/// the wait for the next one, so an idle or half-open connection closes at once.
/// `handle` is called once per frame, in order.
pub async fn serve<H, Fut, S, Stop>(
    stream: TcpStream,
    budget: Rc<Semaphore>,
    limits: Limits,
    handle: H,
    stopping: S,
    stop: Stop,
) where
    H: Fn(Bytes) -> Fut,
    Fut: Future<Output = Outcome>,
    S: Fn() -> bool,
    Stop: Future<Output = ()>,
{
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(std::cell::RefCell::new(stream));
    let (tx, rx) = local_channel::new_bounded::<Result<Admitted, ReadEnd>>(limits.inflight_max);
    let reader = spawn_reader(Rc::clone(&stream), budget, limits, tx);
    let peer = stream
        .borrow()
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let stop = std::pin::pin!(stop);
    let mut stop = stop;
    loop {
        // `stop` is polled only until it first resolves: the loop ends then.
        let next = futures_lite::future::or(rx.recv(), async {
            stop.as_mut().await;
            None
        })
        .await;
        let Some(next) = next else {
            break;
        };
        if stopping() {
            break;
        }
        let Some(admitted) = admitted(next, &peer) else {
            break;
        };
        let keep_open = answer(&stream, handle(admitted.frame.clone()).await, &peer).await;
        drop(admitted);
        if !keep_open {
            break;
        }
        if stopping() {
            break;
        }
    }
    drop(rx);
    reader.cancel().await;
    // Take the stream back out of the RefCell only after the reader is gone.
    if let Ok(cell) = Rc::try_unwrap(stream) {
        let _ = cell.into_inner().close().await;
    }
}

/// The reader: frames, each admitted against the core's byte budget, into `tx` until the
/// stream ends or fails (its last item says why).
fn spawn_reader(
    stream: Rc<std::cell::RefCell<TcpStream>>,
    budget: Rc<Semaphore>,
    limits: Limits,
    tx: local_channel::LocalSender<Result<Admitted, ReadEnd>>,
) -> glommio::Task<()> {
    glommio::spawn_local(async move {
        let mut buf = BytesMut::with_capacity(CONNECTION_BUFFER_BYTES);
        loop {
            let next = read_frame(&stream, &mut buf, &budget, limits.request_bytes_max).await;
            let end = next.is_err();
            if tx.send(next).await.is_err() || end {
                break;
            }
        }
    })
}

/// The next request, or `None` (logged) when the read ended.
fn admitted(next: Result<Admitted, ReadEnd>, peer: &str) -> Option<Admitted> {
    match next {
        Ok(admitted) => Some(admitted),
        Err(ReadEnd::Eof) => None,
        Err(ReadEnd::TooLarge(size)) => {
            tracing::info!(%peer, size, "closing connection: request frame above request_bytes_max");
            None
        }
        Err(ReadEnd::Io(e)) => {
            tracing::debug!(%peer, error = %e, "connection read failed");
            None
        }
    }
}

/// Carries out a request's outcome; whether the connection stays open.
async fn answer(stream: &Rc<std::cell::RefCell<TcpStream>>, outcome: Outcome, peer: &str) -> bool {
    match outcome {
        Outcome::Respond(chunks) => match write_response(stream, chunks).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection write failed");
                false
            }
        },
        Outcome::Silent => true,
        Outcome::Close(reason) => {
            tracing::info!(%peer, %reason, "closing connection");
            false
        }
    }
}

/// Reads one frame: the size, then (after admission) the body.
async fn read_frame(
    stream: &Rc<std::cell::RefCell<TcpStream>>,
    buf: &mut BytesMut,
    budget: &Rc<Semaphore>,
    request_bytes_max: usize,
) -> Result<Admitted, ReadEnd> {
    fill(stream, buf, 4).await?;
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    // A negative size or one above the limit is refused before a byte of it is buffered.
    let size = usize::try_from(size).map_err(|_| ReadEnd::TooLarge(usize::MAX))?;
    if size > request_bytes_max {
        return Err(ReadEnd::TooLarge(size));
    }
    let permit = budget
        .acquire_static_permit(size.max(1) as u64)
        .await
        .map_err(|_| ReadEnd::Eof)?;
    fill(stream, buf, 4 + size).await?;
    buf.advance(4);
    let frame = buf.split_to(size).freeze();
    Ok(Admitted {
        frame,
        _permit: permit,
    })
}

/// Reads until `buf` holds at least `want` bytes. The RefCell borrow is taken and released
/// inside each poll, never held across an await point of another task's.
async fn fill(
    stream: &Rc<std::cell::RefCell<TcpStream>>,
    buf: &mut BytesMut,
    want: usize,
) -> Result<(), ReadEnd> {
    while buf.len() < want {
        let need = want - buf.len();
        buf.reserve(need.clamp(CONNECTION_RESERVE_BYTES_MIN, CONNECTION_RESERVE_BYTES_MAX));
        // Zero only the part about to be read into, not the whole spare capacity.
        let start = buf.len();
        let room = (buf.capacity() - start).min(need.max(CONNECTION_READ_BYTES_MIN));
        buf.resize(start + room, 0);
        let n = futures_lite::future::poll_fn(|cx| {
            let mut s = stream.borrow_mut();
            std::pin::Pin::new(&mut *s).poll_read(cx, &mut buf[start..])
        })
        .await;
        match n {
            Ok(0) => {
                buf.truncate(start);
                return Err(ReadEnd::Eof);
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) => {
                buf.truncate(start);
                return Err(ReadEnd::Io(e));
            }
        }
    }
    Ok(())
}

/// Writes every chunk of a response frame, with as few syscalls as the socket allows:
/// `sendmsg` with all chunks as one iovec array (no copy of record batches), falling back to
/// glommio's readiness wait only when the socket buffer is full.
async fn write_response(
    stream: &Rc<std::cell::RefCell<TcpStream>>,
    chunks: Vec<Bytes>,
) -> io::Result<()> {
    let mut queue: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    let fd = stream.borrow().as_raw_fd();
    while !queue.is_empty() {
        match send_vectored(fd, &queue) {
            Ok(n) => advance(&mut queue, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Socket full: let glommio wait for writability and write part of the head.
                let head = queue.front().cloned().unwrap_or_default();
                let n = futures_lite::future::poll_fn(|cx| {
                    let mut s = stream.borrow_mut();
                    std::pin::Pin::new(&mut *s).poll_write(cx, &head)
                })
                .await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                advance(&mut queue, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if n >= front.len() {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

fn send_vectored(fd: i32, queue: &VecDeque<Bytes>) -> io::Result<usize> {
    let iov: Vec<libc::iovec> = queue
        .iter()
        .take(SENDMSG_CHUNKS_MAX)
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len();
    // SAFETY: every iovec points into a `Bytes` that `queue` keeps alive for this call; the
    // kernel only reads them. MSG_DONTWAIT: glommio's sockets may be in blocking mode.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
