//! The TCP transport of the management endpoints (the appliance's management thread, the mapper's
//! metrics) and of the mapper's DNS over TCP: one thread with a single-threaded tokio runtime, our own
//! accept loop ([`accept`]), and, for HTTP, hyper's HTTP/1.1 ([`Endpoint`]), so that what a client does can
//! only cost it its own connection.
//!
//! - **Accepting never stops.** An accept error (EMFILE when every file descriptor the process may open is
//!   taken, ENFILE, ENOBUFS) is counted, logged and retried 100 ms later; the listener serves again as
//!   soon as descriptors are free.
//! - **Connections are bounded.** At most the owner's bound ([`Limits::connections`] for HTTP) are open at
//!   once; one more is accepted and closed at once (the client sees the connection end), so a crowd of
//!   idle clients cannot grow memory. Each HTTP connection's buffer is bounded too ([`MAX_BUF`]).
//! - **Nobody holds a connection for free.** An HTTP request head must arrive within [`Limits::head`] of
//!   the connection being ready for it (so an idle keep-alive connection ends after that long too), and a
//!   write that makes no progress for [`Limits::write_stall`] (the client does not read) ends the
//!   connection ([`Stalls`]). Other protocols set their own deadlines in the future that serves a
//!   connection.
//! - **One thread, no locks.** Connections are served on the serving thread, in turn with everything else
//!   it does (the `tick` of [`Endpoint::serve`] and [`accept::Listener::serve`]): a connection waiting for
//!   its client gives the thread back to the others at once. When `serve` returns, no connection is being
//!   served and none will be: what the serving functions read may go away then (the appliance's answers
//!   read its ports).
use bytes::Bytes;
use http_body_util::Full;
use std::cell::RefCell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub mod accept;
mod stalls;

pub use accept::{Counters, TICK};
pub use http::Method;
pub use stalls::Stalls;

/// The largest read or write buffer of one connection (hyper's own minimum is 8 KB).
pub const MAX_BUF: usize = 64 << 10;

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

/// A bound, listening HTTP endpoint; it serves once [`Endpoint::serve`] is called (connections that come
/// before wait in the kernel's queue).
pub struct Endpoint {
    listener: accept::Listener,
    limits: Limits,
}

impl Endpoint {
    /// Binds `addr` and makes the runtime that will serve it: every error a start can meet is met here.
    pub fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        Endpoint::bind_with(addr, Limits::default())
    }

    pub fn bind_with(addr: SocketAddr, limits: Limits) -> io::Result<Endpoint> {
        Ok(Endpoint {
            listener: accept::Listener::bind(addr)?,
            limits,
        })
    }

    /// The endpoint's counters, to be read while it serves.
    pub fn counters(&self) -> Arc<Counters> {
        self.listener.counters()
    }

    /// The address bound (port 0 picks one).
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// Serves on this thread until `tick` (called at least every [`TICK`]) returns false. `answer` makes
    /// each answer, on this thread. Returns once every connection is closed.
    pub fn serve(self, tick: impl FnMut() -> bool, answer: impl FnMut(&Request) -> Reply + 'static) {
        let Endpoint { listener, limits } = self;
        let counters = listener.counters();
        let answer: Answer = Rc::new(RefCell::new(answer));
        listener.serve("http", limits.connections, tick, move |stream| {
            connection(stream, limits, answer.clone(), counters.clone())
        });
    }
}

/// One connection, served until it ends, fails or breaks a limit.
async fn connection(stream: tokio::net::TcpStream, limits: Limits, answer: Answer, counters: Arc<Counters>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{closed_within, eventually};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::time::Instant;

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

    /// The whole answer to one request on a new connection.
    fn get(addr: SocketAddr, path: &str) -> io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
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
        // Once all three are accepted (their answers fill the sockets), everyone else is still answered,
        // several times over.
        assert!(
            eventually(|| counters.served.load(Relaxed) == 3),
            "the three are accepted"
        );
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
        assert!(eventually(|| counters.open.load(Relaxed) == 4));
        let t0 = Instant::now();
        let mut fifth = TcpStream::connect(addr).unwrap();
        assert!(
            closed_within(&mut fifth, Duration::from_secs(5)),
            "a connection past the limit is closed"
        );
        assert!(t0.elapsed() < Duration::from_secs(2), "closed at once");
        assert_eq!(counters.refused.load(Relaxed), 1);
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
        let (addr, stop, t, counters) = serve(10, Limits::default());
        assert!(get(addr, "/").unwrap().starts_with("HTTP/1.1 200"));
        // A connection open at the stop is closed with the endpoint.
        let mut open = TcpStream::connect(addr).unwrap();
        assert!(eventually(|| counters.open.load(Relaxed) == 1), "accepted");
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

/// What the tests of this crate wait with.
#[cfg(test)]
mod test_util {
    use std::io::{self, Read};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// Waits up to 20 s for `f` to hold.
    pub fn eventually(f: impl Fn() -> bool) -> bool {
        let t = Instant::now();
        while !f() {
            if t.elapsed() > Duration::from_secs(20) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Whether the peer has closed `s` (read returns 0 or an error) within `limit`.
    pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
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
}
