%% @doc Strict HTTP/1.1 request framing, in the NIF: request heads parsed by
%% the Rust crate `httparse' and held to RFC 9112 and to our limits, and a
%% streaming decoder of chunked bodies that writes the body straight into a
%% `py_buffer' (socket binary in, body bytes in the buffer's segments: no copy
%% in between, no garbage per chunk).
%%
%% == Heads ==
%% `parse_head/2' takes the bytes received so far and answers `more' until the
%% head is complete, `{ok, Head, Rest}' once it is (`Rest': what follows the
%% head, a sub-binary of the input), or `{error, Status, Reason}' as soon as the
%% head is refused; after an error, answer `Status' and close the connection.
%% The work is linear in the size of the input (never more than
%% `max_head_size' + 1 bytes are looked at): a caller accumulating a head should
%% call again only when the new bytes contain a LF, or when the accumulated
%% bytes pass `max_request_line' or `max_head_size' (so the limit is answered).
%%
%% Rules (RFC 9112 §2-§6, RFC 9110 §5):
%% <ul>
%% <li>Every line ends in CRLF (a bare LF or CR: 400 `bad_line_ending'); empty
%% lines before the request line are skipped (§2.2).</li>
%% <li>Request line: `Method SP Target SP HTTP/1.x', single spaces, a token
%% method (400 `bad_request_line'); longer than `max_request_line': 414
%% `request_line_too_long'. The target must fit the method (§3.2): origin-form
%% (`/...') or absolute-form (`scheme://host...'), authority-form
%% (`host:port') only and always for CONNECT, `*' only for OPTIONS (400
%% `bad_target'). A well-formed version other than 1.0 and 1.1: 505
%% `unsupported_version'; a malformed one: 400 `bad_version'.</li>
%% <li>Field names are tokens, no whitespace before the colon (400
%% `bad_header_name'); values hold no control character but HTAB, obs-text is
%% allowed (400 `bad_header_value'); a line starting with whitespace is
%% obs-fold (400 `obs_fold'). A field line longer than `max_header_line', more
%% than `max_headers' fields, or a head over `max_head_size' bytes (also while
%% incomplete): 431 (`header_line_too_long', `too_many_headers',
%% `head_too_large').</li>
%% <li>`Content-Length' is one run of ASCII digits; identical repeats (in
%% separate fields or one comma list) are allowed, anything else is 400
%% `bad_content_length' (`+3', `-0', `0, 5', `0 5', `3' then `2').</li>
%% <li>`Transfer-Encoding' (all its fields, one list; case-insensitive; empty
%% elements ignored): with `Content-Length', 400
%% `content_length_with_transfer_encoding'; in HTTP/1.0, 400
%% `transfer_encoding_in_http10'; chunked not last, 400 `chunked_not_final';
%% chunked twice, with parameters, or a malformed list, 400
%% `bad_transfer_encoding'; any other coding (`gzip, chunked'), 501
%% `unsupported_transfer_encoding'.</li>
%% <li>`Host' repeated or malformed: 400 `bad_host'; `Content-Type' repeated:
%% 400 `duplicate_field'. A missing `Host' is accepted.</li>
%% <li>`Expect' with anything but `100-continue' (case-insensitive): 417
%% `expectation_failed'; `expect_continue' is true only for HTTP/1.1.</li>
%% <li>`keep_alive': HTTP/1.1 unless `Connection: close'; HTTP/1.0 only with
%% `Connection: keep-alive' (and no `close').</li>
%% <li>Memory for the header table could not be allocated: 503 `enomem'.</li>
%% </ul>
%%
%% == Chunked bodies ==
%% `chunked_new/1' makes a decoder (a NIF resource); `chunked_feed/3' decodes
%% socket data into a buffer. The input may be cut anywhere. Chunk sizes are
%% 1 to 16 hex digits, no sign, no whitespace unless an extension follows;
%% extensions (`5;a=b', `5 ; a="q s"') are checked and ignored; a chunk-size
%% line longer than `max_chunk_line' is an error, never a truncation. Trailers
%% are checked as field lines, bounded by `max_trailers' and
%% `max_trailer_size', and discarded; framing fields (`Content-Length',
%% `Transfer-Encoding', `Host', `Trailer', `TE', `Authorization') are refused
%% there. The decoder never holds more than
%% `max(max_chunk_line, max_trailer_size) + 2' bytes of its own. Errors are
%% sticky. The decoder never closes the buffer.
%%
%% Inputs above 256 KiB (and calls that find the decoder or the buffer's writer
%% held by a large call of another process) run on a dirty CPU scheduler, like
%% `py_buffer:write/2'.
-module(bodypipe_http_parser).

-export([parse_head/1, parse_head/2, chunked_new/0, chunked_new/1, chunked_feed/3]).

-export_type([head/0, head_limits/0, head_error/0, decoder/0, chunked_limits/0,
              feed_result/0, chunk_error/0]).

-type head_limits() :: #{max_request_line => pos_integer(),
                         max_header_line => pos_integer(),
                         max_headers => pos_integer(),
                         max_head_size => pos_integer()}.
%% Defaults: `max_request_line' 8192 (bytes without CRLF, else 414),
%% `max_header_line' 8192 (else 431), `max_headers' 100 (else 431),
%% `max_head_size' 65536 (the whole head, else 431).

-type head() :: #{method := binary(),
                  target := binary(),
                  version := {1, 0} | {1, 1},
                  headers := [{Name :: binary(), Value :: binary()}],
                  body := none | {length, non_neg_integer()} | chunked,
                  keep_alive := boolean(),
                  expect_continue := boolean()}.
%% `headers' in order, names lowercased, values without surrounding whitespace.

-type head_error() :: {error, 400 | 414 | 417 | 431 | 501 | 503 | 505, Reason :: atom()}.

-opaque decoder() :: reference().

-type chunked_limits() :: #{max_chunk_line => pos_integer(),
                            max_trailers => non_neg_integer(),
                            max_trailer_size => pos_integer()}.
%% Defaults: `max_chunk_line' 4096 (bytes without CRLF, extensions included),
%% `max_trailers' 100, `max_trailer_size' 16384 (all trailer lines with their
%% CRLFs).

-type chunk_error() :: bad_chunk_size | chunk_size_too_long | bad_chunk_extension
                     | chunk_line_too_long | bad_line_ending | bad_chunk_terminator
                     | too_many_trailers | trailers_too_large | bad_trailer
                     | forbidden_trailer.

-type feed_result() :: more
                     | {done, Rest :: binary()}
                     | {full, Rest :: binary()}
                     | {error, {bad_chunk, chunk_error()}}
                     | {error, too_large | closed | exceeds_content_length | enomem
                             | decoder_failed}.

%% Key => {Default, Least value allowed}.
-define(HEAD_LIMITS, #{max_request_line => {8192, 1}, max_header_line => {8192, 1},
                       max_headers => {100, 1}, max_head_size => {65536, 1}}).
-define(CHUNKED_LIMITS, #{max_chunk_line => {4096, 1}, max_trailers => {100, 0},
                          max_trailer_size => {16384, 1}}).

%% @doc `parse_head/2' with the default limits.
-spec parse_head(binary()) -> {ok, head(), binary()} | more | head_error().
parse_head(Bin) ->
    parse_head(Bin, #{}).

%% @doc Parses the request head at the start of `Bin' (see the module
%% documentation for the rules). `Rest' is what follows the head: the start of
%% the body, or of a pipelined request. Unknown limit keys or bad values raise
%% `badarg'.
-spec parse_head(binary(), head_limits()) -> {ok, head(), binary()} | more | head_error().
parse_head(Bin, Limits) when is_binary(Bin), is_map(Limits) ->
    #{max_request_line := L, max_header_line := HL, max_headers := H, max_head_size := S} =
        limits(Limits, ?HEAD_LIMITS),
    bodypipe_nif:or_dirty(bodypipe_nif:http_parse_head(Bin, L, HL, H, S),
                          fun() -> bodypipe_nif:http_parse_head_dirty(Bin, L, HL, H, S) end);
parse_head(Bin, Limits) ->
    erlang:error(badarg, [Bin, Limits]).

%% @doc `chunked_new/1' with the default limits.
-spec chunked_new() -> decoder().
chunked_new() ->
    chunked_new(#{}).

%% @doc A decoder at the start of a chunked body. Unknown limit keys or bad
%% values raise `badarg' (`max_trailers' may be 0: no trailer accepted).
-spec chunked_new(chunked_limits()) -> decoder().
chunked_new(Limits) when is_map(Limits) ->
    #{max_chunk_line := L, max_trailers := T, max_trailer_size := S} =
        limits(Limits, ?CHUNKED_LIMITS),
    bodypipe_nif:http_chunked_new(L, T, S);
chunked_new(Limits) ->
    erlang:error(badarg, [Limits]).

%% @doc Decodes `Data' (socket bytes of the body) into `Buf'.
%%
%% <ul>
%% <li>`more': all of `Data' was consumed, the body goes on.</li>
%% <li>`{done, Rest}': the last chunk, the trailers and the final CRLF were
%% consumed; `Rest' (a sub-binary of `Data') is what follows the body. The
%% buffer is not closed: close it with `py_buffer:close/1'.</li>
%% <li>`{full, Rest}': the ring buffer refused a write (its `max_buffered'
%% high-water mark); nothing of `Rest' was consumed. Call
%% `py_buffer:notify_writable/1', wait for `{py_buffer, Buf, writable | closed}',
%% then feed `Rest' again.</li>
%% <li>`{error, {bad_chunk, Why}}': the framing is broken (answer 400 if nothing
%% was sent yet, and close); `{error, too_large}': the buffer's `max_size' was
%% reached (413); `{error, closed}': the reader closed, or the buffer was closed
%% or aborted; `{error, enomem}': memory ran out. Every error is final: later
%% feeds return the same framing error, or `{error, decoder_failed}'.</li>
%% </ul>
-spec chunked_feed(decoder(), py_buffer:buffer(), binary()) -> feed_result().
chunked_feed(Decoder, Buf, Data) when is_binary(Data) ->
    bodypipe_nif:or_dirty(bodypipe_nif:http_chunked_feed(Decoder, Buf, Data),
                          fun() -> bodypipe_nif:http_chunked_feed_dirty(Decoder, Buf, Data) end);
chunked_feed(Decoder, Buf, Data) ->
    erlang:error(badarg, [Decoder, Buf, Data]).

%% `Limits' over the defaults of `Spec'; badarg on an unknown key, a value
%% that is not an integer or is below the key's least value.
limits(Limits, Spec) ->
    maps:foreach(fun(K, V) ->
                         case Spec of
                             #{K := {_, Min}} when is_integer(V), V >= Min -> ok;
                             _ -> erlang:error(badarg, [#{K => V}])
                         end
                 end, Limits),
    maps:merge(maps:map(fun(_, {Default, _}) -> Default end, Spec), Limits).
