//! The HTTP transport of the management endpoints (the appliance's management thread, the mapper's
//! metrics): hyper's HTTP/1.1 on a single-threaded tokio runtime, with our own accept loop so that what a
//! client does can only cost it its own connection.
//!
//! - **Accepting never stops.** An accept error (EMFILE when every file descriptor the process may open is
//!   taken, ENFILE, ENOBUFS) is logged and retried 100 ms later; the endpoint answers again as soon as
//!   descriptors are free. (tiny_http, used before, ended its accept thread at the first error, and
//!   panicked in it when the descriptor ran out between accept and its dup.)
//! - **Connections are bounded.** At most [`Limits::connections`] are open at once; one more is accepted
//!   and closed at once (the client sees the connection end), so a crowd of idle clients cannot grow
//!   threads or memory. Each connection's buffer is bounded too ([`MAX_BUF`]).
//! - **Nobody holds a connection for free.** A request head must arrive within [`Limits::head`] of the
//!   connection being ready for it (so an idle keep-alive connection ends after that long too), and a write
//!   that makes no progress for [`Limits::write_stall`] (the client does not read) ends the connection.
//! - **One thread, no locks.** Answers are made on the serving thread, in turn with everything else it does
//!   (the `tick` of [`Endpoint::serve`]): a connection waiting for its client to read gives the thread back
//!   to the others at once. When `serve` returns, no answer is being made and none will be: what answers
//!   read may go away then (the appliance's answers read its ports).
use bytes::Bytes;
use http_body_util::Full;
use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use http::Method;

/// The largest read or write buffer of one connection (hyper's own minimum is 8 KB).
pub const MAX_BUF: usize = 64 << 10;
/// How often `tick` is called at least.
pub const TICK: Duration = Duration::from_millis(100);
/// After an accept error, the next try waits this long.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What the endpoint allows one client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// A request head must be complete this long after the connection is ready for it.
    pub head: Duration,
    /// A write that makes no progress for this long ends its connection. Generous: a client on a loaded
    /// machine may not be scheduled for a while.
    pub write_stall: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 256,
            head: Duration::from_secs(30),
            write_stall: Duration::from_secs(10),
        }
    }
}

/// What the endpoint counts, for the owner's metrics.
#[derive(Default, Debug)]
pub struct Counters {
    /// Accepts that failed (EMFILE and the like); each is retried.
    pub accept_errors: AtomicU64,
    /// Connections closed at once because [`Limits::connections`] were open.
    pub over_limit: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections ended because a write waited [`Limits::write_stall`] (the client did not read).
    pub stalled: AtomicU64,
}

/// A request, as the answering function sees it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    /// The part after `?`, or "".
    pub query: &'a str,
}

/// An answer: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }
}

/// The function that makes answers, shared by the connections' tasks on the serving thread.
type Answer = Rc<RefCell<dyn FnMut(&Request) -> Reply>>;

/// A bound, listening endpoint; it serves once [`Endpoint::serve`] is called (connections that come
/// before wait in the kernel's queue).
pub struct Endpoint {
    listener: std::net::TcpListener,
    rt: tokio::runtime::Runtime,
    limits: Limits,
    counters: Arc<Counters>,
}

impl Endpoint {
    /// Binds `addr` and makes the runtime that will serve it: every error a start can meet is met here.
    pub fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        Endpoint::bind_with(addr, Limits::default())
    }

    pub fn bind_with(addr: SocketAddr, limits: Limits) -> io::Result<Endpoint> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Endpoint {
            listener,
            rt,
            limits,
            counters: Arc::default(),
        })
    }

    /// The endpoint's counters, to be read while it serves.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The address bound (port 0 picks one).
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves on this thread until `tick` (called at least every [`TICK`]) returns false. `answer` makes
    /// each answer, on this thread. Returns once every connection is closed.
    pub fn serve(self, mut tick: impl FnMut() -> bool, answer: impl FnMut(&Request) -> Reply + 'static) {
        let Endpoint {
            listener,
            rt,
            limits,
            counters,
        } = self;
        let answer: Answer = Rc::new(RefCell::new(answer));
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    log::error!("http: cannot serve: {e}");
                    return;
                }
            };
            let mut last_tick = Instant::now();
            let mut failing = false;
            while tick_due(&mut last_tick, &mut tick) {
                let Ok(accepted) = tokio::time::timeout(TICK, listener.accept()).await else {
                    continue;
                };
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        counters.accept_errors.fetch_add(1, Relaxed);
                        if !failing {
                            log::warn!("http {}: accepting failed ({e}); trying again", addr_of(&listener));
                            failing = true;
                        }
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                };
                if failing {
                    log::warn!("http {}: accepting again", addr_of(&listener));
                    failing = false;
                }
                if counters.open.load(Relaxed) >= limits.connections as u64 {
                    counters.over_limit.fetch_add(1, Relaxed);
                    drop(stream);
                    continue;
                }
                counters.open.fetch_add(1, Relaxed);
                let (counters, answer) = (counters.clone(), answer.clone());
                tokio::task::spawn_local(async move {
                    // Counted down also when the task is dropped unfinished (at the end of `serve`).
                    let _open = Open(&counters.open);
                    connection(stream, limits, answer, &counters).await;
                });
            }
        });
        // Dropping the set drops every connection's task: nothing is answered from here on.
        drop(local);
    }
}

/// Counts a connection down when dropped.
struct Open<'a>(&'a AtomicU64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Calls `tick` if [`TICK`] has passed since the last call; false once it said stop.
fn tick_due(last: &mut Instant, tick: &mut impl FnMut() -> bool) -> bool {
    if last.elapsed() < TICK {
        return true;
    }
    *last = Instant::now();
    tick()
}

fn addr_of(l: &tokio::net::TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}

/// One connection, served until it ends, fails or breaks a limit.
async fn connection(stream: tokio::net::TcpStream, limits: Limits, answer: Answer, counters: &Counters) {
    let io = hyper_util::rt::TokioIo::new(Stalls::new(stream, limits.write_stall, &counters.stalled));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (method, uri) = (req.method(), req.uri());
        let r = Request {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
        };
        // Never borrowed twice: answers are made to completion, one at a time, on this thread.
        let reply = (answer.borrow_mut())(&r);
        let response = hyper::Response::builder()
            .status(reply.status)
            .header(http::header::CONTENT_TYPE, reply.content_type)
            .body(Full::new(Bytes::from(reply.body)))
            .unwrap_or_else(|_| {
                let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"bad answer\n")));
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                r
            });
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.head)
        .max_buf_size(MAX_BUF)
        .serve_connection(io, service)
        .await;
}

/// A stream whose writes fail with `TimedOut` once one has made no progress for `limit` (counted once in
/// `count`).
struct Stalls<'a, S> {
    inner: S,
    limit: Duration,
    /// Set while a write waits; reset when a write makes progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    count: &'a AtomicU64,
    counted: bool,
}

impl<'a, S> Stalls<'a, S> {
    fn new(inner: S, limit: Duration, count: &'a AtomicU64) -> Stalls<'a, S> {
        Stalls {
            inner,
            limit,
            stalled: None,
            count,
            counted: false,
        }
    }

    /// What a write that returned `r` returns: `r`, unless it waited and the wait has lasted too long.
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if !std::mem::replace(&mut self.counted, true) {
                    self.count.fetch_add(1, Relaxed);
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client has not read for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalls<'_, S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalls<'_, S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// An endpoint answering `/big` with `size` bytes and anything else with "ok", served by a thread
    /// until the returned flag is set; the thread's handle ends once `serve` has returned.
    fn serve(size: usize, limits: Limits) -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>, Arc<Counters>) {
        let ep = Endpoint::bind_with("127.0.0.1:0".parse().unwrap(), limits).unwrap();
        let (addr, counters) = (ep.addr(), ep.counters());
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            ep.serve(
                move || !s.load(SeqCst),
                move |r| match r.path {
                    "/big" => Reply::new(200, "text/plain", vec![b'x'; size]),
                    _ => Reply::new(200, "text/plain", format!("ok {} {}", r.method, r.query)),
                },
            )
        });
        (addr, stop, t, counters)
    }

    /// Waits up to 20 s for `f` to hold.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let t = Instant::now();
        while !f() {
            if t.elapsed() > Duration::from_secs(20) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// The whole answer to one request on a new connection.
    fn get(addr: SocketAddr, path: &str) -> io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Whether the peer has closed `s` (read returns 0 or an error) within `limit`.
    fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 65536];
        while t.elapsed() < limit {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }

    #[test]
    fn answers_carry_status_type_method_and_query() {
        let (addr, stop, t, _) = serve(10, Limits::default());
        let a = get(addr, "/x?worker=1&ms=5").unwrap();
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains("content-type: text/plain"), "{a}");
        assert!(a.ends_with("ok GET worker=1&ms=5"), "{a}");
        // Keep-alive: two requests on one connection, two answers.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");
        assert!(got.ends_with("ok GET q"), "{got}");
        stop.store(true, SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn a_client_that_never_reads_stalls_only_itself_and_is_dropped() {
        let limits = Limits {
            write_stall: Duration::from_millis(1500),
            ..Limits::default()
        };
        let (addr, stop, t, counters) = serve(256 << 10, limits);
        // Three clients ask for 50 large answers each and read nothing: their answers fill the sockets.
        let mut bad = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            // A small receive buffer, so that the answers stall whatever the machine's buffer limits.
            let size: libc::c_int = 4096;
            // SAFETY: the descriptor is open for the call; the option value is a c_int on the stack, its
            // size passed with it.
            let r = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
            s.write_all(&b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50))
                .unwrap();
            bad.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        // Everyone else is still answered, several times over.
        for _ in 0..5 {
            assert!(get(addr, "/big").unwrap().len() > 256 << 10);
        }
        // The stuck clients are dropped once their writes have waited for the limit: counted, and their
        // connections closed while the clients still hold them.
        assert!(
            eventually(|| counters.stalled.load(Relaxed) >= 3),
            "three stalled connections are ended"
        );
        assert!(eventually(|| counters.open.load(Relaxed) == 0), "and closed");
        drop(bad);
        stop.store(true, SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn connections_are_bounded_and_an_idle_or_slow_one_ends() {
        let limits = Limits {
            connections: 4,
            head: Duration::from_secs(3),
            ..Limits::default()
        };
        let ep = Endpoint::bind_with("127.0.0.1:0".parse().unwrap(), limits).unwrap();
        let (addr, counters) = (ep.addr(), ep.counters());
        let t = std::thread::spawn(move || ep.serve(|| true, |_| Reply::new(200, "text/plain", "ok")));
        // Four idle connections take every place; a fifth is closed at once (well before the head limit
        // would end it).
        let mut idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        assert!(eventually(|| counters.open.load(Relaxed) == 4));
        let t0 = Instant::now();
        let mut fifth = TcpStream::connect(addr).unwrap();
        assert!(
            closed_within(&mut fifth, Duration::from_secs(5)),
            "a connection past the limit is closed"
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "closed at once");
        assert_eq!(counters.over_limit.load(Relaxed), 1);
        // A head that trickles in no faster than the limit allows is cut off, like the idle ones.
        idle[0].write_all(b"GET / HTTP/1.1\r\n").unwrap();
        for s in &mut idle {
            assert!(closed_within(s, Duration::from_secs(10)), "an idle connection ends");
        }
        // Their places are free again.
        assert!(get(addr, "/").unwrap().starts_with("HTTP/1.1 200"));
        assert!(
            eventually(|| counters.open.load(Relaxed) == 0),
            "every connection is counted down"
        );
        drop(t);
    }

    #[test]
    fn serve_returns_when_tick_says_stop_and_answers_nothing_after() {
        let (addr, stop, t, _) = serve(10, Limits::default());
        assert!(get(addr, "/").unwrap().starts_with("HTTP/1.1 200"));
        // A connection open at the stop is closed with the endpoint.
        let mut open = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, SeqCst);
        t.join().unwrap();
        assert!(closed_within(&mut open, Duration::from_secs(5)));
        assert!(TcpStream::connect(addr).is_err(), "nobody listens after serve returned");
    }

    #[test]
    fn accepting_goes_on_after_descriptors_ran_out() {
        // This test is its own process (nextest), so the limit is this process's alone.
        let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (addr, counters) = (ep.addr(), ep.counters());
        let t = std::thread::spawn(move || ep.serve(|| true, |_| Reply::new(200, "text/plain", "ok")));
        assert!(get(addr, "/").unwrap().starts_with("HTTP/1.1 200"));
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write a valid rlimit on the stack.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
            let low = libc::rlimit {
                rlim_cur: 128,
                rlim_max: l.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
        }
        // Both ends are in this process: connect until no descriptor is left, then free one and connect
        // again, so that the client holds the last one and the endpoint cannot accept. Until accept has
        // failed three times: one failure alone may be followed by a retry that takes the descriptor the
        // client has just freed, with no connection left waiting to fail again.
        let mut held = Vec::new();
        let t0 = Instant::now();
        while counters.accept_errors.load(Relaxed) < 3 && t0.elapsed() < Duration::from_secs(20) {
            match TcpStream::connect(addr) {
                Ok(s) => held.push(s),
                Err(_) => {
                    held.pop();
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // It failed, and failing did not end the accept loop: it tried again (each failure counts) ...
        assert!(
            counters.accept_errors.load(Relaxed) >= 3,
            "accept failed and was retried ({} failures)",
            counters.accept_errors.load(Relaxed)
        );
        // ... and answers again once they are.
        drop(held);
        // SAFETY: as above.
        unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0) };
        let t0 = Instant::now();
        let mut ok = false;
        while !ok && t0.elapsed() < Duration::from_secs(10) {
            ok = get(addr, "/").map(|a| a.starts_with("HTTP/1.1 200")).unwrap_or(false);
        }
        assert!(ok, "answers again once descriptors are free");
        drop(t);
    }
}
