import torch, os, sys
import safetensors.torch as st
from transformers import Mamba2ForCausalLM
torch.manual_seed(0)
out = os.environ['OUT']
for name in ['mamba2-tiny', 'mamba2-groups']:
    d = f'.device/fixtures/{name}'
    io = st.load_file(d + '/io.safetensors')
    m = Mamba2ForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = m(io['input_ids']).logits.contiguous()
    st.save_file({'input_ids': io['input_ids'].contiguous(), 'logits': logits}, f'{out}/{name}-transformers-5.17.safetensors',
                 metadata={'producer': 'transformers 5.17.0 Mamba2ForCausalLM.from_pretrained(<fixture>), torch 2.11 CPU fp32', 'fixture': name})

