package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The gRPC-Go baselines: a service written by hand (no generated code) with
// protobuf wrapper messages, served and called over loopback TCP with
// gRPC-Go's defaults. Nothing is durable.
//
//	Send(BytesValue) BytesValue          one message per call; the reply is the
//	                                      message (echo) or empty
//	Sink(stream BytesValue) Int64Value   client streaming: the count received
//	Echo(stream BytesValue) stream BytesValue   every message back
//	Inc(BytesValue) Int64Value           the counter; the argument is an
//	                                      idempotency key

const grpcService = "ambrbench.Bench"

// grpcImpl is what the handlers do.
type grpcImpl struct {
	echo  bool
	msgs  atomic.Int64
	bytes atomic.Int64
	// inc is the counter's increment; nil: an in-memory counter.
	inc func(ctx context.Context, key []byte) (int64, error)
	mu  sync.Mutex
	n   int64
}

type grpcBench interface{ bench() }

func (*grpcImpl) bench() {}

var grpcDesc = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*grpcBench)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Send", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			g := srv.(*grpcImpl)
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			g.msgs.Add(1)
			g.bytes.Add(int64(len(in.Value)))
			if g.echo {
				return in, nil
			}
			return &wrapperspb.BytesValue{}, nil
		}},
		{MethodName: "Inc", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			g := srv.(*grpcImpl)
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if g.inc != nil {
				n, err := g.inc(ctx, in.Value)
				if err != nil {
					return nil, err
				}
				return wrapperspb.Int64(n), nil
			}
			g.mu.Lock()
			g.n++
			n := g.n
			g.mu.Unlock()
			return wrapperspb.Int64(n), nil
		}},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Sink", ClientStreams: true, Handler: func(srv any, st grpc.ServerStream) error {
			g := srv.(*grpcImpl)
			var n int64
			in := new(wrapperspb.BytesValue)
			for {
				if err := st.RecvMsg(in); err != nil {
					if errors.Is(err, io.EOF) {
						return st.SendMsg(wrapperspb.Int64(n))
					}
					return err
				}
				n++
				g.msgs.Add(1)
				g.bytes.Add(int64(len(in.Value)))
			}
		}},
		{StreamName: "Echo", ClientStreams: true, ServerStreams: true, Handler: func(srv any, st grpc.ServerStream) error {
			g := srv.(*grpcImpl)
			in := new(wrapperspb.BytesValue)
			for {
				if err := st.RecvMsg(in); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				g.msgs.Add(1)
				g.bytes.Add(int64(len(in.Value)))
				if err := st.SendMsg(in); err != nil {
					return err
				}
			}
		}},
	},
}

var (
	sinkDesc = grpc.StreamDesc{StreamName: "Sink", ClientStreams: true}
	echoDesc = grpc.StreamDesc{StreamName: "Echo", ClientStreams: true, ServerStreams: true}
)

// grpcPair is a gRPC server on loopback and a client connected to it.
type grpcPair struct {
	impl *grpcImpl
	srv  *grpc.Server
	conn *grpc.ClientConn
	done chan struct{}
}

func startGRPC(impl *grpcImpl) (*grpcPair, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	srv.RegisterService(&grpcDesc, impl)
	p := &grpcPair{impl: impl, srv: srv, done: make(chan struct{})}
	go func() { defer close(p.done); _ = srv.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		<-p.done
		return nil, err
	}
	p.conn = conn
	return p, nil
}

func (p *grpcPair) close() {
	p.conn.Close()
	p.srv.Stop()
	<-p.done
}

// runGRPCUnary sends total messages of size bytes as unary calls from
// inflight goroutines, and returns the time until the last reply.
func runGRPCUnary(ctx context.Context, size int, total int64, inflight int, echo bool) (time.Duration, error) {
	p, err := startGRPC(&grpcImpl{echo: echo})
	if err != nil {
		return 0, err
	}
	defer p.close()
	payload := make([]byte, size)
	// Warm up: the connection, one call.
	if err := p.conn.Invoke(ctx, "/"+grpcService+"/Send", &wrapperspb.BytesValue{Value: payload}, new(wrapperspb.BytesValue)); err != nil {
		return 0, fmt.Errorf("grpc warm-up: %w", err)
	}
	var next atomic.Int64
	errs := make(chan error, inflight)
	start := time.Now()
	var wg sync.WaitGroup
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := &wrapperspb.BytesValue{Value: payload}, new(wrapperspb.BytesValue)
			for next.Add(1) <= total {
				if err := p.conn.Invoke(ctx, "/"+grpcService+"/Send", req, resp); err != nil {
					errs <- err
					return
				}
				if echo && len(resp.Value) != size {
					errs <- fmt.Errorf("grpc echo of %d bytes, sent %d", len(resp.Value), size)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if got := p.impl.msgs.Load(); got != total+1 {
		return 0, fmt.Errorf("grpc server got %d messages, want %d", got, total+1)
	}
	return el, nil
}

// runGRPCStream sends total messages of size bytes on one stream: client
// streaming one-way, bidirectional for echo. It returns the time until the
// server's count (one-way) or the last echo arrived.
func runGRPCStream(ctx context.Context, size int, total int64, echo bool) (time.Duration, error) {
	p, err := startGRPC(&grpcImpl{})
	if err != nil {
		return 0, err
	}
	defer p.close()
	payload := make([]byte, size)
	if err := p.conn.Invoke(ctx, "/"+grpcService+"/Send", &wrapperspb.BytesValue{Value: payload}, new(wrapperspb.BytesValue)); err != nil {
		return 0, fmt.Errorf("grpc warm-up: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc, method := &sinkDesc, "/"+grpcService+"/Sink"
	if echo {
		desc, method = &echoDesc, "/"+grpcService+"/Echo"
	}
	start := time.Now()
	cs, err := p.conn.NewStream(ctx, desc, method)
	if err != nil {
		return 0, err
	}
	recvErr := make(chan error, 1)
	if echo {
		go func() {
			in := new(wrapperspb.BytesValue)
			for i := int64(0); i < total; i++ {
				if err := cs.RecvMsg(in); err != nil {
					recvErr <- err
					return
				}
			}
			recvErr <- nil
		}()
	}
	req := &wrapperspb.BytesValue{Value: payload}
	for i := int64(0); i < total; i++ {
		if err := cs.SendMsg(req); err != nil {
			return 0, err
		}
	}
	if err := cs.CloseSend(); err != nil {
		return 0, err
	}
	if echo {
		if err := <-recvErr; err != nil {
			return 0, err
		}
	} else {
		n := new(wrapperspb.Int64Value)
		if err := cs.RecvMsg(n); err != nil {
			return 0, err
		}
		if n.Value != total {
			return 0, fmt.Errorf("grpc stream: server counted %d, sent %d", n.Value, total)
		}
	}
	return time.Since(start), nil
}
