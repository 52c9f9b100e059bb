"""geodemo web app (placeholder until the app capability lands): says what is not built yet."""

import gradio as gr

with gr.Blocks(title="geodemo") as demo:
    gr.Markdown("# geodemo\nThe photo geo-localization app is not built yet: the pipeline is in progress.")

if __name__ == "__main__":
    demo.launch(server_name="127.0.0.1")
