package bundles

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The worker protocol: frames over the worker's stdin (from the service)
// and stdout (to it). The service sends requests without waiting for the
// answers (ids count up from 0); the worker answers each, in order, before
// it reads the next. A frame is an op byte, a request id (8 bytes), a
// payload length (4 bytes) and the payload; numbers are big endian.
//
//	opLoad   service → worker, first, id 0: config length (4 bytes), the
//	         config (workerConfig, JSON), then the bundle's tar.gz.
//	opEval   service → worker: the time left to the deadline when it was
//	         sent, in nanoseconds (8 bytes), the deadline in Unix
//	         nanoseconds (8 bytes), then the input (workervalue.go).
//	opResult worker → service, one per opLoad and opEval: a result code
//	         (1 byte: 0 success, else 1 + an index into resultErrors), then
//	         the verdict as JSON (success of opEval) or the error message.
const (
	opLoad   byte = 'L'
	opEval   byte = 'E'
	opResult byte = 'R'
)

const frameHeader = 1 + 8 + 4

// Frame size bounds. What the service sends is bounded by Limits and the
// decision request's size; what a worker sends is a verdict or an error
// message, which the service bounds much lower because the worker runs
// policy code it does not trust.
const (
	maxRequestFrame = 64 << 20
	maxResultFrame  = 256 << 10
)

type frame struct {
	op      byte
	id      uint64
	payload []byte
}

// errFrame is a malformed or oversized frame: the peer is not speaking the
// protocol, and the connection ends.
var errFrame = errors.New("malformed worker frame")

// writeFrame writes a frame and flushes it.
func writeFrame(w *bufio.Writer, op byte, id uint64, parts ...[]byte) error {
	if err := bufferFrame(w, op, id, parts...); err != nil {
		return err
	}
	return w.Flush()
}

// bufferFrame writes a frame to w's buffer (which writes through to the
// pipe as it fills) without flushing the end.
func bufferFrame(w *bufio.Writer, op byte, id uint64, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var h [frameHeader]byte
	h[0] = op
	binary.BigEndian.PutUint64(h[1:9], id)
	binary.BigEndian.PutUint32(h[9:], uint32(n))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func readFrame(r *bufio.Reader, maxPayload int) (frame, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(h[9:])
	if int64(n) > int64(maxPayload) {
		return frame{}, fmt.Errorf("%w: a payload of %d bytes, limit %d", errFrame, n, maxPayload)
	}
	f := frame{op: h[0], id: binary.BigEndian.Uint64(h[1:9]), payload: make([]byte, n)}
	if _, err := io.ReadFull(r, f.payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return f, nil
}

// resultErrors are the errors a worker's result can carry, most specific
// first: the worker sends the first its error matches, and the service
// gives the caller an error that matches the same sentinel.
var resultErrors = []error{
	ErrUndefined, ErrEvalTimeout, ErrEval,
	ErrForbiddenBuiltin, ErrForbiddenData, ErrForbiddenPackage, ErrNoDecision, ErrParse, ErrCompile,
	ErrSignature, ErrInvalidBundle,
}

// resultCode is the code of err in a result frame.
func resultCode(err error) byte {
	if err == nil {
		return 0
	}
	for i, s := range resultErrors {
		if errors.Is(err, s) {
			return byte(1 + i)
		}
	}
	// An error of no known kind fails the evaluation (or the load).
	return byte(1 + 2)
}

// remoteError is an error a worker reported: its message as the worker
// wrote it, matching the sentinel its code names.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// resultError is the error a result frame's code and message stand for,
// or errFrame for a code out of range.
func resultError(code byte, msg []byte) error {
	if code == 0 || int(code) > len(resultErrors) {
		return fmt.Errorf("%w: result code %d", errFrame, code)
	}
	if len(msg) > maxResultMessage {
		msg = append(msg[:maxResultMessage:maxResultMessage], "…"...)
	}
	return &remoteError{sentinel: resultErrors[code-1], msg: strings.ToValidUTF8(string(msg), "?")}
}

// maxResultMessage bounds the error message of a result that the service
// passes on (compiler errors can be long; a worker cannot make them huge).
const maxResultMessage = 8 << 10
