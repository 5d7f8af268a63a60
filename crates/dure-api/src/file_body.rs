//! An HTTP body read from a file piece by piece, so an artifact going up
//! (the CLI's upload) or down (the controller serving an agent) is never
//! held whole in memory; its exact length is known, so it goes out with a
//! `Content-Length` the other side can refuse early.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// How much is read from the file for one frame.
const PIECE: usize = 64 * 1024;

/// The bytes of one file as it was when opened: a file that grows meanwhile
/// is sent up to its opening length, one that shrinks ends in an error.
pub struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Box<[u8]>,
}

impl FileBody {
    pub async fn open(path: &Path) -> io::Result<FileBody> {
        let file = tokio::fs::File::open(path).await?;
        let left = file.metadata().await?.len();
        Ok(FileBody {
            file,
            left,
            buf: vec![0; PIECE].into_boxed_slice(),
        })
    }

    /// How many bytes are left to send.
    pub fn len(&self) -> u64 {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left).map_or(PIECE, |left| left.min(PIECE));
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut read))?;
        let filled = read.filled();
        if filled.is_empty() {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was sent",
            ))));
        }
        this.left -= filled.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(filled)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
