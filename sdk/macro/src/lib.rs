//! `#[outpost::main]`: turns `fn(Request) -> Result<Response, Error>` into the component's
//! `wasi:http/incoming-handler` export.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Marks the function that handles every request. It must take an `outpost::Request` and
/// return `Result<outpost::Response, outpost::Error>`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[outpost::main] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    if function.sig.inputs.len() != 1 || function.sig.asyncness.is_some() {
        return syn::Error::new_spanned(
            &function.sig,
            "#[outpost::main] expects `fn NAME(req: outpost::Request) -> Result<outpost::Response, outpost::Error>`",
        )
        .to_compile_error()
        .into();
    }
    let name = &function.sig.ident;
    quote! {
        #function

        #[doc(hidden)]
        struct __OutpostHandler;

        impl ::outpost::__private::Guest for __OutpostHandler {
            fn handle(request: ::outpost::__private::IncomingRequest, out: ::outpost::__private::ResponseOutparam) {
                ::outpost::__private::serve(request, out, #name)
            }
        }

        ::outpost::__private::wasip2::http::proxy::export!(__OutpostHandler with_types_in ::outpost::__private::wasip2);
    }
    .into()
}
