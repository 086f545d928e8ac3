package tokenservice

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	portvaktv1 "github.com/portvakt/portvakt/proto/portvakt/v1"
)

// A request grpc-go cannot decode (a string field that is not UTF-8, say)
// would reach the caller as INTERNAL, from inside grpc-go, before any
// interceptor sees it. Register and ServerOption make it a bad request
// instead: the codec decodes the service's requests into an undecoded
// holder and keeps the error, and the service's handlers refuse such a
// request as INVALID_ARGUMENT naming the field, through the interceptors
// (so it is logged and counted like any call).

// undecoded is a request as the codec got it: the message, and why it
// could not be decoded, if it could not.
type undecoded struct {
	msg   proto.Message
	err   error
	field string
}

// codec is gRPC's proto codec, except for the service's requests.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }
func (c codec) Name() string                           { return c.proto.Name() }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	u, ok := v.(*undecoded)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if u.err = c.proto.Unmarshal(data, u.msg); u.err != nil {
		u.field = invalidUTF8Field(data.Materialize(), u.msg.ProtoReflect().Descriptor())
	}
	return nil
}

// ServerOption is the codec a server with the service registered must use.
func ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(codec{proto: encoding.GetCodecV2("proto")})
}

// Register puts the service, and its KeyService, on a server made with
// ServerOption.
//
// Their handlers are the generated ones but for the codec's undecoded
// holder, and made once rather than per call: each call allocates its
// request message and nothing else here (the holder is pooled; the
// method's info and the handler the interceptors wrap are shared, and
// interceptors only read them).
func (s *Service) Register(r grpc.ServiceRegistrar) {
	register(r, portvaktv1.TokenService_ServiceDesc, s, map[string]grpc.MethodHandler{
		"GetToken":         unary(s, portvaktv1.TokenService_GetToken_FullMethodName, s.GetToken),
		"WhoAmI":           unary(s, portvaktv1.TokenService_WhoAmI_FullMethodName, s.WhoAmI),
		"ListEnvironments": unary(s, portvaktv1.TokenService_ListEnvironments_FullMethodName, s.ListEnvironments),
	})
	k := s.keys
	register(r, portvaktv1.KeyService_ServiceDesc, k, map[string]grpc.MethodHandler{
		"ListKeys":    unary(k, portvaktv1.KeyService_ListKeys_FullMethodName, k.ListKeys),
		"RegisterKey": unary(k, portvaktv1.KeyService_RegisterKey_FullMethodName, k.RegisterKey),
		"RotateKey":   unary(k, portvaktv1.KeyService_RotateKey_FullMethodName, k.RotateKey),
	})
}

// register puts impl on r with desc's methods served by handlers.
func register(r grpc.ServiceRegistrar, desc grpc.ServiceDesc, impl any, handlers map[string]grpc.MethodHandler) {
	desc.Methods = slices.Clone(desc.Methods)
	for i, m := range desc.Methods {
		h, ok := handlers[m.MethodName]
		if !ok {
			// A method added to the proto and not here would be served
			// without the codec's refusal of undecodable requests.
			panic(fmt.Sprintf("tokenservice: no handler for %s.%s", desc.ServiceName, m.MethodName))
		}
		desc.Methods[i].Handler = h
	}
	r.RegisterService(&desc, impl)
}

// unary is the handler of one method, whose request is a P.
func unary[Req any, P interface {
	*Req
	proto.Message
}, Resp any](srv any, fullMethod string, call func(context.Context, P) (Resp, error)) grpc.MethodHandler {
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}
	handler := func(ctx context.Context, req any) (any, error) { return call(ctx, req.(P)) }
	return func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := P(new(Req))
		refusal, err := decode(dec, in)
		switch {
		case err != nil:
			return nil, err
		case refusal != nil:
			// Refused through the interceptors, with the request as far
			// as it was decoded never reaching the service.
			if interceptor == nil {
				return nil, toStatus(ctx, refusal)
			}
			return interceptor(ctx, in, info, func(ctx context.Context, _ any) (any, error) {
				return nil, toStatus(ctx, refusal)
			})
		case interceptor == nil:
			return handler(ctx, in)
		}
		return interceptor(ctx, in, info, handler)
	}
}

// holders are the codec's undecoded holders, one per call in flight.
var holders = sync.Pool{New: func() any { return new(undecoded) }}

// decode reads the call's request into msg; a request the codec could not
// decode is a refusal naming the field, err is gRPC's own.
func decode(dec func(any) error, msg proto.Message) (refusal *fieldError, err error) {
	u := holders.Get().(*undecoded)
	u.msg = msg
	if err = dec(u); err == nil && u.err != nil {
		refusal = &fieldError{field: u.field, problem: "is not valid UTF-8; send text fields in UTF-8"}
		if u.field == "" {
			refusal = &fieldError{field: "request", problem: "could not be decoded: " + u.err.Error()}
		}
	}
	*u = undecoded{}
	holders.Put(u)
	return refusal, err
}

// invalidUTF8Field names the first string field of b (a message of type
// md) that is not UTF-8, nested fields as parent.child, or "".
func invalidUTF8Field(b []byte, md protoreflect.MessageDescriptor) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		value, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		switch {
		case fd == nil:
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(value):
			return string(fd.Name())
		case fd.Kind() == protoreflect.MessageKind:
			if inner := invalidUTF8Field(value, fd.Message()); inner != "" {
				return fmt.Sprintf("%s.%s", fd.Name(), inner)
			}
		}
	}
	return ""
}
