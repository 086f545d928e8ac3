package tokenservice

import (
	"context"
	"fmt"
	"slices"
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

// Register puts the service on a server made with ServerOption.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	desc := portvaktv1.TokenService_ServiceDesc
	desc.Methods = slices.Clone(desc.Methods)
	for i, m := range desc.Methods {
		generated, fullMethod := m.Handler, "/"+desc.ServiceName+"/"+m.MethodName
		desc.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			return generated(srv, ctx, func(v any) error {
				u := &undecoded{msg: v.(proto.Message)}
				if err := dec(u); err != nil {
					return err
				}
				if u.err == nil {
					return nil
				}
				// Refused through the interceptors, with the request as
				// far as it was decoded never reaching the service.
				refusal := &fieldError{field: u.field, problem: "is not valid UTF-8; send text fields in UTF-8"}
				if u.field == "" {
					refusal = &fieldError{field: "request", problem: "could not be decoded: " + u.err.Error()}
				}
				_, err := interceptor(ctx, v, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, func(ctx context.Context, _ any) (any, error) {
					return nil, toStatus(ctx, refusal)
				})
				return err
			}, interceptor)
		}
	}
	r.RegisterService(&desc, s)
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
