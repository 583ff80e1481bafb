//! The HTTP transport of the management endpoints (the appliance's management thread, the mapper's
//! metrics): tiny_http, plus what it lacks when a client misbehaves.
//!
//! - Every connection has a send timeout ([`WRITE_TIMEOUT`]). It is set on the listening socket, and Linux
//!   copies it into each accepted one. (Not a receive timeout: on the listening socket that makes accept
//!   time out when no client comes, and tiny_http stops accepting at its first accept error.)
//! - tiny_http's accept thread ends at its first accept error (EMFILE, when a client holds every file
//!   descriptor the process may open): [`Endpoint`] then listens again, so the endpoint comes back once
//!   descriptors are free instead of staying deaf until a restart.
//! - Answers are made and written off the serving thread, by one writer thread per connection
//!   ([`Responder`]). tiny_http writes the answers of one connection in order, so a client that sends
//!   many requests at once and never reads the answers used to block whoever wrote them: with one
//!   thread serving everything, `/healthz` stopped answering. Now only that connection's writer waits,
//!   each write for at most [`WRITE_TIMEOUT`]; and a connection that queues many requests makes its own
//!   writer render them, not the thread everyone else's requests pass through.
use std::collections::HashMap;
use std::io::{self, Cursor};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiny_http::{Request, Response, Server};

/// A write that makes no progress for this long fails (the client does not read). Generous: a client on
/// a loaded machine may not be scheduled for a while, and a stuck write holds only its connection's writer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections with a writer thread at once; past this, answers are written by the caller (each write
/// still bounded by [`WRITE_TIMEOUT`]).
pub const MAX_WRITERS: usize = 64;
/// A writer thread with nothing to write for this long ends.
const WRITER_IDLE: Duration = Duration::from_secs(1);

/// An HTTP server on `addr` whose connections have the send timeout above.
pub fn bind(addr: SocketAddr) -> io::Result<Server> {
    Server::from_listener(listener(addr)?, None).map_err(|e| io::Error::other(e.to_string()))
}

/// A listening socket on `addr` with [`WRITE_TIMEOUT`] as its send timeout (and no receive timeout).
fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    let tv = libc::timeval {
        tv_sec: WRITE_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: WRITE_TIMEOUT.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: the descriptor is the listener's, open for the whole call; the option value is a timeval on
    // the stack, its size passed with it, which is what SO_SNDTIMEO reads.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

/// A listening HTTP server that listens again when tiny_http's accept thread has ended (see the module
/// doc).
pub struct Endpoint {
    addr: SocketAddr,
    server: Option<Server>,
}

impl Endpoint {
    pub fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        let server = bind(addr)?;
        // The address actually bound (port 0 picks one), which listening again must use.
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        Ok(Endpoint {
            addr,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next request, waiting at most `limit`. After an accept error (the accept thread has ended) the
    /// server is dropped and bound again on a later call; until that succeeds, this waits `limit` and
    /// returns None.
    pub fn recv_timeout(&mut self, limit: Duration) -> Option<Request> {
        let Some(server) = &self.server else {
            match bind(self.addr) {
                Ok(s) => {
                    log::warn!("http {}: listening again", self.addr);
                    self.server = Some(s);
                }
                Err(e) => {
                    log::warn!("http {}: cannot listen again yet: {e}", self.addr);
                    std::thread::sleep(limit);
                }
            }
            return None;
        };
        match server.recv_timeout(limit) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("http {}: accepting failed ({e}); listening again", self.addr);
                self.server = None;
                None
            }
        }
    }
}

/// An answer, made when its turn comes.
pub type Answer = Box<dyn FnOnce() -> Response<Cursor<Vec<u8>>> + Send>;

/// What a writer thread is given: a request and how to answer it.
type Job = (Request, Answer);

/// Writes answers off the serving thread, in order per connection (see the module doc).
#[derive(Default, Clone)]
pub struct Responder {
    writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Job>>>>,
    gate: Arc<Gate>,
}

/// Whether answers may still be made (what they read may go away at shutdown: the appliance's answers
/// read its ports), and how many are being made now.
#[derive(Default)]
struct Gate {
    closed: AtomicBool,
    making: AtomicUsize,
}

impl Gate {
    /// The answer `answer` makes, or 503 once [`Responder::close`] was called.
    fn make(&self, answer: Answer) -> Response<Cursor<Vec<u8>>> {
        // Counted before the check, and `close` sets `closed` before it reads the count (all SeqCst):
        // either `close` sees this answer being made and waits for it, or this sees `closed`.
        self.making.fetch_add(1, SeqCst);
        let r = if self.closed.load(SeqCst) {
            Response::from_data(b"stopping\n".to_vec()).with_status_code(503)
        } else {
            answer()
        };
        self.making.fetch_sub(1, SeqCst);
        r
    }
}

impl Responder {
    /// Answers `req` with what `answer` makes: hands both to the writer thread of the request's
    /// connection (started if there is none), which makes the answer and writes it, and returns at once;
    /// unless [`MAX_WRITERS`] connections already have one, then does both here.
    pub fn respond(&self, req: Request, answer: impl FnOnce() -> Response<Cursor<Vec<u8>>> + Send + 'static) {
        let answer: Answer = Box::new(answer);
        let Some(peer) = req.remote_addr().copied() else {
            let _ = req.respond(self.gate.make(answer));
            return;
        };
        let mut map = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let mut job = (req, answer);
        if let Some(tx) = map.get(&peer) {
            match tx.send(job) {
                Ok(()) => return,
                // Its writer ended without leaving the map (it cannot: it leaves under this lock);
                // start another.
                Err(mpsc::SendError(j)) => {
                    map.remove(&peer);
                    job = j;
                }
            }
        }
        if map.len() < MAX_WRITERS {
            let (tx, rx) = mpsc::channel::<Job>();
            let (writers, gate) = (self.writers.clone(), self.gate.clone());
            let started = std::thread::Builder::new()
                .name("mgmt-writer".into())
                .spawn(move || write_loop(&rx, &writers, &gate, peer));
            if started.is_ok() {
                tx.send(job)
                    .expect("the writer holds its receiver until it leaves the map");
                map.insert(peer, tx);
                return;
            }
        }
        drop(map);
        let _ = job.0.respond(self.gate.make(job.1));
    }

    /// From now on, answers are 503 without being made; returns once no answer is being made (true), or
    /// after `limit` (false). Writes of answers already made may go on.
    pub fn close(&self, limit: Duration) -> bool {
        self.gate.closed.store(true, SeqCst);
        let t = std::time::Instant::now();
        while self.gate.making.load(SeqCst) != 0 {
            if t.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Connections with a writer thread now.
    pub fn writers(&self) -> usize {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One connection's writer: makes and writes answers in order until none came for [`WRITER_IDLE`], then leaves the map
/// (under its lock, after a last look, so that no answer handed over is lost).
fn write_loop(
    rx: &mpsc::Receiver<Job>,
    writers: &Mutex<HashMap<SocketAddr, mpsc::Sender<Job>>>,
    gate: &Gate,
    peer: SocketAddr,
) {
    loop {
        let job = match rx.recv_timeout(WRITER_IDLE) {
            Ok(j) => j,
            Err(_) => {
                let mut map = writers.lock().unwrap_or_else(|e| e.into_inner());
                match rx.try_recv() {
                    Ok(j) => {
                        drop(map);
                        j
                    }
                    Err(_) => {
                        map.remove(&peer);
                        return;
                    }
                }
            }
        };
        let _ = job.0.respond(gate.make(job.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    /// A server answering every request with `size` bytes, served by one thread as the appliance does.
    fn serve(size: usize) -> (SocketAddr, Responder) {
        let server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let responder = Responder::default();
        let r = responder.clone();
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                r.respond(req, move || Response::from_data(vec![b'x'; size]));
            }
        });
        (addr, responder)
    }

    fn get(addr: SocketAddr) -> io::Result<usize> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)?;
        Ok(body.len())
    }

    #[test]
    fn a_client_that_never_reads_stalls_only_itself() {
        let (addr, responder) = serve(256 << 10);
        assert!(get(addr).unwrap() > 256 << 10);
        // Three clients send 50 requests each and read nothing: their answers fill the socket buffers.
        let mut bad = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50))
                .unwrap();
            bad.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        // Everyone else is still answered, several times over.
        for _ in 0..5 {
            assert!(get(addr).unwrap() > 256 << 10);
        }
        assert!(responder.writers() >= 3, "each stuck client has its writer");
        drop(bad);
    }

    #[test]
    fn a_connection_whose_answers_take_long_holds_up_only_itself() {
        let server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let (release, held) = mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let entered = Arc::new(AtomicUsize::new(0));
        let responder = Responder::default();
        let (r, e) = (responder.clone(), entered.clone());
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                // `/slow` answers are made only when the test releases them.
                let slow = req.url() == "/slow";
                let (held, entered) = (held.clone(), e.clone());
                r.respond(req, move || {
                    if slow {
                        entered.fetch_add(1, SeqCst);
                        let _ = held.lock().unwrap().recv_timeout(Duration::from_secs(30));
                    }
                    Response::from_data(b"ok".to_vec())
                });
            }
        });
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3))
            .unwrap();
        let t = Instant::now();
        while entered.load(SeqCst) == 0 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(responder.writers(), 1, "the slow requests reached their writer");
        assert_eq!(entered.load(SeqCst), 1, "which is making the first answer");
        // Answered while the slow connection's answers are still being made.
        assert!(get(addr).unwrap() > 0);
        // Closing waits for the answer being made (held), then the rest are 503 without being made.
        let closer = {
            let r = responder.clone();
            std::thread::spawn(move || r.close(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!closer.is_finished(), "close waits while an answer is being made");
        release.send(()).unwrap();
        assert!(closer.join().unwrap());
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let count = |got: &[u8], what: &[u8]| got.windows(what.len()).filter(|w| *w == what).count();
        while count(&got, b"HTTP/1.1 ") < 3 {
            let n = s.read(&mut buf).expect("the slow connection gets its three answers");
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(count(&got, b"HTTP/1.1 200"), 1, "{}", String::from_utf8_lossy(&got));
        assert_eq!(count(&got, b"HTTP/1.1 503"), 2, "{}", String::from_utf8_lossy(&got));
        // Released but never made: nothing waits on the channel any more.
        assert!(release.send(()).is_ok());
    }

    /// A socket option of `fd` that is a timeval.
    fn timeout(fd: &impl std::os::fd::AsRawFd, opt: libc::c_int) -> Duration {
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: the descriptor is open for the call; `tv` and `len` are valid out-parameters of the
        // size passed.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &mut tv as *mut libc::timeval as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)
    }

    #[test]
    fn accepted_sockets_get_the_send_timeout_and_accept_never_times_out() {
        let l = listener("127.0.0.1:0".parse().unwrap()).unwrap();
        // A receive timeout here would make accept fail after that long without a client, and tiny_http
        // stops accepting at the first accept error (the endpoint went deaf after 10 s idle once).
        assert_eq!(timeout(&l, libc::SO_RCVTIMEO), Duration::ZERO);
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        assert_eq!(timeout(&a, libc::SO_SNDTIMEO), WRITE_TIMEOUT);
        assert_eq!(timeout(&a, libc::SO_RCVTIMEO), Duration::ZERO);
    }
}
